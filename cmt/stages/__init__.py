"""The stages a job can run (``stage=NAME``) and the task wrapper around them.

Every stage is ``run(ctx) -> dict[str, float]``; `run` below validates the whole config first
(`cmt.validation`: one ``key=value: what is allowed`` line, before any logger, model or data), builds the
context (seeded, with a logger), dispatches on ``cfg.stage.name``, records a failing job in
``<results>/failures.jsonl`` (Hydra's launchers run the other jobs of a multirun and report the failure at
the end), and always closes the logger and the W&B run in a ``finally``, so a failing job never leaves a
run open for the next job to share.
"""

from __future__ import annotations

import logging
import sys
import uuid
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from omegaconf import DictConfig

from cmt.errors import ConfigError
from cmt.logging import build_logger
from cmt.results.store import append_rows
from cmt.stages import evaluate, pipeline, pretrain, rl, sft, teach
from cmt.stages.common import StageContext, seed_everything
from cmt.validation import validate_config

RUNNERS: dict[str, Callable[[StageContext], dict[str, float]]] = {
    "pretrain": pretrain.run,
    "teach": teach.run,
    "comt_sft": partial(sft.run, method_name="comt_sft"),
    "cot_sft": partial(sft.run, method_name="cot_sft"),
    "ccrl": partial(rl.run, method_name="comt_ccrl"),
    "rl": partial(rl.run, method_name="cot_sft_rl"),
    "eval": evaluate.run,
    "pipeline": pipeline.run,
}


def _quiet_third_party() -> None:
    """Silence log lines and warnings of libraries that say nothing actionable to our users."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*treespec.*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def _tags(cfg: DictConfig) -> list[str]:
    return [f"model:{cfg.model.name}", f"stage:{cfg.stage.name}", f"benchmark:{cfg.benchmark.name}"]


def _close(logger) -> None:
    """Finish the logger's run (W&B: its own run only, never another job's)."""
    if logger is None:
        return
    logger.finalize("success")
    experiment = getattr(logger, "_experiment", None)
    if experiment is not None and hasattr(experiment, "finish"):
        experiment.finish()


def _record_failure(ctx: StageContext, error: BaseException) -> None:
    """Append the failed job (its overrides, folder and one-line error) to ``<results>/failures.jsonl``."""
    from hydra.core.hydra_config import HydraConfig

    cfg = ctx.cfg
    try:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        row = {**ctx.row_identity(), "stage": cfg.stage.name, "overrides": overrides,
               "output_dir": str(cfg.paths.output_dir), "error_type": type(error).__name__,
               "error": (str(error).splitlines() or [""])[0][:500],
               "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        append_rows(Path(cfg.paths.results) / "failures.jsonl", [row])
    except Exception as record_error:  # noqa: BLE001 - never mask the job's own error
        print(f"could not record the failure in {cfg.paths.results}: {record_error}", file=sys.stderr)


def run(cfg: DictConfig) -> dict[str, float]:
    """Run the stage ``cfg.stage.name``; returns its metrics (the optimised value for sweeps is picked
    by `optimized_metric`)."""
    run_id = uuid.uuid4().hex[:12]
    try:
        # Every value the stage reads, before the logger is built or anything loads.
        validate_config(cfg)
    except ConfigError as error:
        _record_failure(StageContext(cfg=cfg, logger=None, run_id=run_id), error)
        raise
    name = cfg.stage.name
    if name not in RUNNERS:  # validate_config knows the same stages (tests/unit/test_config_validation.py)
        raise ValueError(f"stage={name} has no runner; choose one of {', '.join(RUNNERS)}")
    _quiet_third_party()
    seed_everything(cfg.seed)
    logger = build_logger(cfg, _tags(cfg))
    ctx = StageContext(cfg=cfg, logger=logger, run_id=run_id)
    try:
        return RUNNERS[name](ctx)
    except Exception as error:
        _record_failure(ctx, error)
        raise
    finally:
        _close(logger)


def optimized_metric(cfg: DictConfig, metrics: dict[str, float]) -> float | dict[str, float]:
    """The value a sweep optimises: ``cfg.optimized_metric`` looked up in the stage's metrics, or every
    metric when it is null (multi-objective searches pick theirs by name)."""
    key = cfg.get("optimized_metric")
    if not key:
        return metrics
    if key not in metrics:
        raise KeyError(f"optimized_metric={key} is not among this stage's metrics: {', '.join(sorted(metrics))}")
    return metrics[key]
