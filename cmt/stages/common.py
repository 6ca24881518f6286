"""What every stage shares: the methods, where artifacts live, seeding, and the stage context.

Artifacts live in folders derived from the config, so a stage finds its input without the user passing
paths (``stage=comt_sft`` after ``stage=teach``, ``stage=ccrl`` after ``stage=comt_sft``):

    <artifacts>/<tag>/data/<benchmark>/<teacher>/seed<seed>/{comt,cot}.jsonl   training sets (stage=teach)
    <artifacts>/<tag>/<model>/seed<seed>/<method>/model/              checkpoints (training stages)
    <artifacts>/<tag>/<model>/seed<seed>/<method>/training.json       what training it cost (read by stage=eval)
    <artifacts>/reuse/<method>/<key>/                                 SFT models shared by jobs (reuse_sft)
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
from cmt.atomic import atomic_write
from cmt.errors import CmtError
from cmt.secrets import redact_config


@dataclass(frozen=True)
class Method:
    """A trained variant of a student: what it trains on and which checkpoint it starts from.

    Attributes:
        name: As it appears in result rows (``comt_sft``, ``cot_sft_rl`` ...).
        parent: The method whose checkpoint it starts from (None: the base model).
        trace: For SFT methods, the kind of teacher trace it trains on (``comt`` or ``cot``).
        stage: The command that produces it.
    """

    name: str
    parent: str | None
    trace: str | None
    stage: str


METHODS = {
    "base": Method("base", None, None, "(none: the model as loaded)"),
    "comt_sft": Method("comt_sft", "base", "comt", "python run.py stage=comt_sft"),
    "cot_sft": Method("cot_sft", "base", "cot", "python run.py stage=cot_sft"),
    "comt_ccrl": Method("comt_ccrl", "comt_sft", None, "python run.py stage=ccrl"),
    "cot_sft_rl": Method("cot_sft_rl", "cot_sft", None, "python run.py stage=rl"),
}


class MissingInputError(CmtError, FileNotFoundError):
    """A stage's input is not there yet; the message names the command that produces it."""


def method(name: str) -> Method:
    """The method called ``name``, or a one-line error listing the known ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def _model_root(cfg: DictConfig) -> Path:
    return Path(cfg.paths.artifacts) / str(cfg.tag) / str(cfg.model.name) / f"seed{cfg.seed}"


def checkpoint_dir(cfg: DictConfig, method_name: str) -> Path:
    """Where the training stage of ``method_name`` saves its model (a save_pretrained folder)."""
    return _model_root(cfg) / method_name / "model"


def training_record_path(cfg: DictConfig, method_name: str) -> Path:
    """Where a training stage records what ``method_name`` cost (``train_time_s``, ``train_tokens``)."""
    return checkpoint_dir(cfg, method_name).parent / "training.json"


def training_set_path(cfg: DictConfig, trace: str) -> Path:
    """Where ``stage=teach`` writes the training set of one trace kind (``comt`` or ``cot``)."""
    return (Path(cfg.paths.artifacts) / str(cfg.tag) / "data" / str(cfg.benchmark.name) / str(cfg.teacher.name)
            / f"seed{cfg.seed}" / f"{trace}.jsonl")


def require_checkpoint(cfg: DictConfig, method_name: str) -> Path | None:
    """The checkpoint of a method (None for ``base``), or an error naming the command that makes it."""
    if method(method_name).parent is None:
        return None
    folder = checkpoint_dir(cfg, method_name)
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise MissingInputError(
            f"no {method_name} checkpoint for model={cfg.model.name} seed={cfg.seed} at {folder}; "
            f"run `{METHODS[method_name].stage} model={cfg.model.name}` first (or stage=pipeline)")
    return folder


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
    # Training time and tokens of each method trained (or read back) in this job, for the result rows.
    training: dict[str, dict[str, float]] = field(default_factory=dict)

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
        cfg = self.cfg
        return {
            "run_id": self.run_id, "experiment": cfg.experiment_name, "sweep": cfg.get("sweep_name"),
            "model": cfg.model.name,
            "teacher": cfg.teacher.name,
            "seed": int(cfg.seed), "git_sha": git_sha(), "config_hash": config_hash(cfg),
        }
