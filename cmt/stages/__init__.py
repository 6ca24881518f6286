"""The stages a job can run (``stage=NAME``) and the task wrapper around them.

Every stage is a function ``run(ctx) -> dict[str, float]`` that its config names (``stage._target_`` in
``conf/stage/<name>.yaml``, beside what the stage trains: ``method``, ``parent``, its data or reward). `run`
below validates the whole config first (`cmt.validation`: one ``key=value: what is allowed`` line, before any
logger, model or data), builds the context (seeded, with a logger), calls the stage's function
(`run_stage`), records a failing job in ``<results>/failures.jsonl`` (Hydra's launchers run the other jobs of
a multirun and report the failure at the end), and always closes the logger and the W&B run in a
``finally``, so a failing job never leaves a run open for the next job to share.
"""

from __future__ import annotations

import logging
import sys
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

from hydra.utils import get_method
from omegaconf import DictConfig

from cmt.errors import ConfigError
from cmt.logging import build_logger
from cmt.results.store import append_rows
from cmt.stages.common import StageContext, seed_everything
from cmt.validation import validate_config


def run_stage(ctx: StageContext) -> dict[str, float]:
    """Call the function ``ctx.cfg.stage._target_`` names with ``ctx`` (a pipeline calls it for each step)."""
    return get_method(ctx.cfg.stage._target_)(ctx)


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
        row = {**ctx.row_identity(), "overrides": overrides,
               "output_dir": str(cfg.paths.output_dir), "error_type": type(error).__name__,
               "error": (str(error).splitlines() or [""])[0][:500],
               "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        append_rows(Path(cfg.paths.results) / "failures.jsonl", [row])
    except Exception as record_error:  # noqa: BLE001 - never mask the job's own error
        print(f"could not record the failure in {cfg.paths.results}: {record_error}", file=sys.stderr)


def run(cfg: DictConfig) -> dict[str, float]:
    """Run the job's stage (``cfg.stage``); returns its metrics (the optimised value for sweeps is picked
    by `optimized_metric`)."""
    run_id = uuid.uuid4().hex[:12]
    try:
        # Every value the stage reads, before the logger is built or anything loads.
        validate_config(cfg)
    except ConfigError as error:
        _record_failure(StageContext(cfg=cfg, logger=None, run_id=run_id), error)
        raise
    _quiet_third_party()
    seed_everything(cfg.seed)
    logger = build_logger(cfg, _tags(cfg))
    ctx = StageContext(cfg=cfg, logger=logger, run_id=run_id)
    try:
        return run_stage(ctx)
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
