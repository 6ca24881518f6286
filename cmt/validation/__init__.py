"""Validate the whole config of a job before anything heavy starts (no logger, model, data or teacher yet).

`validate_config` is called once by `cmt.stages.run`, for every stage. It checks the nodes that the stage
(or each step of ``stage=pipeline``) reads, so that a value nothing reads never blocks a job: ``stage=eval``
does not check ``rl``, ``stage=teach`` does not check ``sft``. A wrong type, a value out of range or a
combination that cannot run fails with one line, ``key=value: what is allowed`` (a `ConfigError`, which
`run.py` prints as ``error: ...`` and exits 1). docs/validation.md lists every check.

Here: what every job reads, and which checks each stage function runs (`STAGE_CHECKS`, keyed by the
``_target_`` of its config). The checks of each node, one function per node: `cmt.validation.data` (prompt,
benchmark, teach, teacher), `cmt.validation.training` (model, sft, trainer, resume, rl, pretrain),
`cmt.validation.evaluation` (eval), `cmt.validation.stages` (a stage's method, data, reward and trace; the
pipeline's steps and their inputs). RL and reward settings are checked by `cmt.rl.config.validate_rl_config`,
the same function the RL stage calls; the value helpers are shared with it (`cmt.config_checks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from omegaconf import DictConfig

from cmt.config_checks import choice, has, integer, string
from cmt.validation.data import check_benchmark, check_prompt, check_teach, check_teacher
from cmt.validation.evaluation import check_eval
from cmt.validation.stages import (
    EVAL,
    PIPELINE,
    RL,
    SFT,
    TEACH,
    check_method,
    check_pipeline_inputs,
    check_sft_data,
    check_trace,
    pipeline_steps,
)
from cmt.validation.training import (
    check_model,
    check_pretrain,
    check_resume,
    check_rl,
    check_sft,
    check_strategy,
    check_trainer,
)

LOGGER_MODES = ("auto", "online", "offline", "disabled")

Check = Callable[[DictConfig], None]


@dataclass(frozen=True)
class OfStage:
    """A check of one stage node: called as ``check(cfg, stage=<key of the node>)``."""

    check: Callable[..., None]


def check_common(cfg: DictConfig) -> None:
    """What every job reads: the seed, where it writes, and the metric logger."""
    integer(cfg, "seed", 0, 2 ** 32 - 1)
    string(cfg, "paths.artifacts")
    string(cfg, "paths.results")
    if has(cfg, "optimized_metric"):
        string(cfg, "optimized_metric", optional=True)
    if has(cfg, "logger.mode"):
        choice(cfg, "logger.mode", LOGGER_MODES)


# What each stage function reads, checked in this order: checks of the whole config, and checks of the stage's
# own node (`OfStage`: ``stage``, or ``stage.stages.<step>`` for a pipeline's step).
STAGE_CHECKS: dict[str, tuple[Check | OfStage, ...]] = {
    "cmt.stages.pretrain.run": (check_pretrain, check_trainer, check_strategy),
    TEACH: (check_benchmark, check_teacher, check_teach),
    SFT: (check_model, check_prompt, OfStage(check_method), OfStage(check_sft_data), check_sft, check_trainer,
          check_strategy, check_resume),
    RL: (check_model, check_prompt, check_benchmark, OfStage(check_method), OfStage(check_rl), OfStage(check_trace),
         check_trainer, check_resume),
    EVAL: (check_model, check_prompt, check_benchmark, check_eval),
    PIPELINE: (check_pipeline_inputs,),
}


def stage_checks(cfg: DictConfig) -> list[Check]:
    """The checks of the job's stage (of each step, for a pipeline), each once, in order."""
    nodes = ["stage"]
    if _target(cfg, "stage") == PIPELINE:
        nodes = pipeline_steps(cfg) + nodes
    ordered: dict[tuple, Check] = {}
    for node in nodes:
        for check in STAGE_CHECKS[_target(cfg, node)]:
            if isinstance(check, OfStage):
                ordered.setdefault((check.check, node), partial(check.check, stage=node))
            else:
                ordered.setdefault((check, None), check)
    return list(ordered.values())


def _target(cfg: DictConfig, node: str) -> str:
    """The stage function a stage node names (``<node>._target_``), one that has checks."""
    return choice(cfg, f"{node}._target_", tuple(STAGE_CHECKS))


def validate_config(cfg: DictConfig) -> None:
    """Check every value the job's stage reads; returns nothing when the config can run.

    Raises:
        ConfigError: One line naming the first offending key, its value and what is allowed.
    """
    check_common(cfg)
    for check in stage_checks(cfg):
        check(cfg)
