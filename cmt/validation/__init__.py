"""Validate the whole config of a job before anything heavy starts (no logger, model, data or teacher yet).

`validate_config` is called once by `cmt.stages.run`, for every stage. It checks the nodes that the stage
(or each step of ``stage=pipeline``) reads, so that a value nothing reads never blocks a job: ``stage=eval``
does not check ``rl``, ``stage=teach`` does not check ``sft``. A wrong type, a value out of range or a
combination that cannot run fails with one line, ``key=value: what is allowed`` (a `ConfigError`, which
`run.py` prints as ``error: ...`` and exits 1). docs/validation.md lists every check.

Here: what every job reads, the pipeline's own node, and which checks each stage runs (`STAGE_CHECKS`).
The checks of each node, one function per node: `cmt.validation.data` (prompt, benchmark, teach, teacher),
`cmt.validation.training` (model, sft, trainer, resume, rl, trace, pretrain), `cmt.validation.evaluation`
(eval). RL and reward settings are checked by `cmt.rl.config.validate_rl_config`, the same function the RL
stage calls; the value helpers are shared with it (`cmt.config_checks`).
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from cmt.config_checks import choice, fail, get, has, integer, sequence, string
from cmt.validation.data import check_benchmark, check_prompt, check_teach, check_teacher
from cmt.validation.evaluation import check_eval
from cmt.validation.training import (
    check_model,
    check_pretrain,
    check_resume,
    check_rl,
    check_sft,
    check_strategy,
    check_trace,
    check_trainer,
)

LOGGER_MODES = ("auto", "online", "offline", "disabled")

Check = Callable[[DictConfig], None]


def check_common(cfg: DictConfig) -> None:
    """What every job reads: the seed, where it writes, and the metric logger."""
    integer(cfg, "seed", 0, 2 ** 32 - 1)
    string(cfg, "paths.artifacts")
    string(cfg, "paths.results")
    if has(cfg, "optimized_metric"):
        string(cfg, "optimized_metric", optional=True)
    if has(cfg, "logger.mode"):
        choice(cfg, "logger.mode", LOGGER_MODES)


def check_pipeline(cfg: DictConfig) -> None:
    """``stage=pipeline``: known steps (not pipeline itself); the compared methods are checked as eval's."""
    steps = sequence(cfg, "stage.steps")
    allowed = [name for name in STAGE_CHECKS if name != "pipeline"]
    if unknown := [s for s in steps if s not in allowed]:
        raise fail("stage.steps", steps, f"unknown steps {unknown}; choose from {', '.join(allowed)}")
    sequence(cfg, "stage.compare", non_empty=False)


def _eval_of_pipeline(cfg: DictConfig) -> None:
    check_eval(cfg, "stage.compare")


# What each stage reads, checked in this order (a pipeline checks its own node, then each step's).
STAGE_CHECKS: dict[str, tuple[Check, ...]] = {
    "pretrain": (check_pretrain, check_trainer, check_strategy),
    "teach": (check_benchmark, check_teacher, check_teach),
    "comt_sft": (check_model, check_prompt, check_sft, check_trainer, check_strategy, check_resume),
    "cot_sft": (check_model, check_prompt, check_sft, check_trainer, check_strategy, check_resume),
    "ccrl": (check_model, check_prompt, check_benchmark, lambda cfg: check_rl(cfg, "reward"), check_trace,
             check_trainer, check_resume),
    "rl": (check_model, check_prompt, check_benchmark, lambda cfg: check_rl(cfg, "baseline_reward"),
           check_trainer, check_resume),
    "eval": (check_model, check_prompt, check_benchmark, check_eval),
    "pipeline": (check_pipeline,),
}


def stage_checks(cfg: DictConfig) -> list[Check]:
    """The checks of the job's stage (of each step, for a pipeline), each once, in order."""
    name = choice(cfg, "stage.name", tuple(STAGE_CHECKS))
    if name != "pipeline":
        return list(STAGE_CHECKS[name])
    check_pipeline(cfg)
    ordered: list[Check] = []
    for step in get(cfg, "stage.steps"):
        for check in STAGE_CHECKS[step]:
            check = _eval_of_pipeline if check is check_eval else check
            if check not in ordered:
                ordered.append(check)
    return ordered


def validate_config(cfg: DictConfig) -> None:
    """Check every value the job's stage reads; returns nothing when the config can run.

    Raises:
        ConfigError: One line naming the first offending key, its value and what is allowed.
    """
    check_common(cfg)
    for check in stage_checks(cfg):
        check(cfg)
