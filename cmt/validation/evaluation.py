"""Config checks of evaluation: the methods, sizes, calibration bins, sampling and the generation backend.
Part of `cmt.validation`; fails with one ``key=value: what is allowed`` line.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig

from cmt.config_checks import boolean, choice, fail, get, integer, number, positive_int, sequence

INF = math.inf
EVAL_BACKENDS = ("hf", "vllm")


def check_eval(cfg: DictConfig) -> None:
    """Evaluation: the methods (each checkpoint is looked up when the eval starts, before anything loads), sizes,
    calibration bins, sampling and the generation backend."""
    methods = sequence(cfg, "eval.methods")
    if not all(isinstance(m, str) and m for m in methods) or len(set(methods)) != len(methods):
        raise fail("eval.methods", methods, "name each method once: base and/or trained methods such as comt_sft")
    integer(cfg, "eval.n", optional=True)
    for key in ("max_new_tokens", "batch_size", "ece_bins"):
        positive_int(cfg, f"eval.{key}")
    boolean(cfg, "eval.save_predictions")
    samples = positive_int(cfg, "eval.samples")
    temperature = number(cfg, "eval.temperature", 0.0, INF, high_open=True)
    if samples > 1 and temperature <= 0:
        raise fail("eval.samples", samples, "more than 1 needs eval.temperature > 0 (greedy samples are identical)")
    if choice(cfg, "eval.backend", EVAL_BACKENDS) == "vllm":
        from cmt import vllm_engine

        vllm_engine.require_vllm("eval.backend")
        vllm_engine.validate_vllm_config(get(cfg, "vllm"))
