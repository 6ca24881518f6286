"""Where each stage finds its input and leaves its output.

Artifacts live in folders derived from the config, so a stage finds its input without the user passing
paths (``stage=comt_sft`` after ``stage=teach``, ``stage=ccrl`` after ``stage=comt_sft``):

    <artifacts>/<tag>/data/<benchmark>/<teacher>/seed<seed>/{comt,cot}.jsonl   training sets (stage=teach)
    <artifacts>/<tag>/<model>/seed<seed>/<method>/model/              checkpoints (training stages)
    <artifacts>/<tag>/<model>/seed<seed>/<method>/training.json       what training it cost (read by stage=eval)
    <artifacts>/reuse/<method>/<key>/                                 SFT models shared by jobs (reuse_sft)
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from cmt.errors import CmtError

# The stage that trains each of the standard methods (its conf/stage/<stage>.yaml declares the `method`), so
# that a missing checkpoint's error names the command that makes it (tests/unit/test_stage_configs.py keeps the two
# in step). A stage config may declare other methods.
TRAINED_BY = {"comt_sft": "comt_sft", "cot_sft": "cot_sft", "comt_ccrl": "ccrl", "cot_sft_rl": "rl"}


class MissingInputError(CmtError, FileNotFoundError):
    """A stage's input is not there yet; the message names the command that produces it."""


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
    """The checkpoint of a method (None for ``base``, the model as loaded), or an error naming the command
    that makes it."""
    if method_name == "base":
        return None
    folder = checkpoint_dir(cfg, method_name)
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        stage = TRAINED_BY.get(method_name)
        make = (f"run `python run.py stage={stage} model={cfg.model.name}` first (or stage=pipeline)" if stage else
                f"run the stage whose config declares method {method_name} first (the standard methods: base, "
                f"{', '.join(TRAINED_BY)})")
        raise MissingInputError(f"no {method_name} checkpoint for model={cfg.model.name} seed={cfg.seed} at "
                                f"{folder}; {make}")
    return folder
