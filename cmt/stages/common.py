"""What every stage shares: seeding, the run's identity (config hash, code version) and the stage context.

Where a stage finds its input and leaves its output: `cmt.artifacts`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger

from cmt import __version__
from cmt.artifacts import training_record_path
from cmt.atomic import atomic_write
from cmt.secrets import redact_config


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (Lightning's helper), without its log line."""
    pl.seed_everything(int(seed), workers=True, verbose=False)


def config_hash(cfg: DictConfig) -> str:
    """A short hash of the resolved config (minus paths), identifying a run's settings."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("paths", None)
    return hashlib.sha1(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:12]


def git_sha() -> str | None:
    """The commit of the code being run, when it runs from a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def code_version() -> str:
    """The code being run, for keys that must change with it: the commit plus a hash of the uncommitted
    edits to the ``cmt`` package's tracked files (``git diff HEAD``), or the package's version outside a
    git checkout."""
    sha = git_sha()
    if sha is None:
        return f"cmt-{__version__}"
    try:
        diff = subprocess.run(["git", "diff", "HEAD", "--", "."], capture_output=True, timeout=10, check=False,
                              cwd=Path(__file__).parents[1]).stdout
    except (OSError, subprocess.SubprocessError):
        diff = b"(unknown)"
    return f"{sha}+{hashlib.sha1(diff).hexdigest()[:12]}" if diff else sha


@dataclass
class StageContext:
    """Per-job state handed from the task wrapper to the stages: the logger and the run's identity."""

    cfg: DictConfig
    logger: Logger | None
    run_id: str
    started: float = field(default_factory=time.time)
    # The job's whole config, which identifies its result rows (``cfg`` unless the stage is a pipeline's step).
    job_cfg: DictConfig | None = None
    # Training time and tokens of each method trained (or read back) in this job, for the result rows.
    training: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.job_cfg = self.cfg if self.job_cfg is None else self.job_cfg

    def record_training(self, method_name: str, cost: dict[str, float]) -> None:
        """Keep what training ``method_name`` cost (``train_time_s``, ``train_tokens``) for this job's result
        rows, and beside its checkpoint (:func:`training_record_path`) for a later ``stage=eval`` job."""
        self.training[method_name] = dict(cost)
        with atomic_write(training_record_path(self.cfg, method_name)) as handle:
            json.dump(self.training[method_name], handle)

    def training_cost(self, method_name: str) -> dict[str, float]:
        """What training ``method_name`` cost: recorded in this job, else read from beside its checkpoint
        (empty for ``base`` and for checkpoints written before the record existed)."""
        if method_name not in self.training:
            path = training_record_path(self.cfg, method_name)
            self.training[method_name] = json.loads(path.read_text()) if path.is_file() else {}
        return self.training[method_name]

    def save_config(self, folder: Path) -> None:
        """Write the resolved, redacted config beside an artifact, so every output says how it was made."""
        folder.mkdir(parents=True, exist_ok=True)
        container = redact_config(OmegaConf.to_container(self.cfg, resolve=True))
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(container)))

    def row_identity(self) -> dict[str, Any]:
        """The columns every result row of this job shares."""
        cfg = self.job_cfg if self.job_cfg is not None else self.cfg
        return {
            "run_id": self.run_id, "experiment": cfg.experiment_name, "sweep": cfg.get("sweep_name"),
            "model": cfg.model.name,
            "teacher": cfg.teacher.name, "stage": cfg.stage.name,
            "seed": int(cfg.seed), "git_sha": git_sha(), "config_hash": config_hash(cfg),
        }
