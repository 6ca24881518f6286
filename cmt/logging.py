"""Metric loggers: W&B (offline unless the user configured it), CSV, or none.

A stage receives the logger built from ``conf/logger`` and hands it to every Lightning Trainer it runs,
so the stages of a pipeline share one W&B run. `cmt.stages.run` closes it in a ``finally``.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger

from cmt.secrets import redact_config


def wandb_configured() -> bool:
    """Whether W&B can reach a server: an API key in the environment or a ``wandb login`` entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(project: str, save_dir: str, mode: str = "auto", entity: str | None = None,
                 group: str | None = None, name: str | None = None, tags: list[str] | None = None) -> Logger:
    """Lightning's W&B logger; ``mode=auto`` is online when W&B is configured, offline otherwise.

    Offline runs are written under ``save_dir/wandb`` and can be uploaded later with ``wandb sync DIR``.
    """
    from pytorch_lightning.loggers import WandbLogger

    if mode == "auto":
        mode = "online" if wandb_configured() else "offline"
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"logger.mode={mode!r} is not one of auto, online, offline, disabled")
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(project=project, save_dir=save_dir, entity=entity, group=group, name=name, tags=tags,
                       mode=mode, offline=mode == "offline")


def build_logger(cfg: DictConfig, tags: list[str]) -> Logger | None:
    """The logger of ``cfg.logger`` (None for ``logger=none``), with the redacted config as hyperparameters."""
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return None
    extra: dict[str, Any] = {"tags": tags} if cfg.logger._target_.endswith("wandb_logger") else {}
    logger = instantiate(cfg.logger, **extra)
    logger.log_hyperparams(redact_config(OmegaConf.to_container(cfg, resolve=True)))
    return logger


def log_metrics(logger: Logger | None, metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log plain metrics outside a Trainer (teach, eval); a no-op without a logger."""
    if logger is not None and metrics:
        logger.log_metrics(dict(metrics), step=step)
