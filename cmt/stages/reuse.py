"""Share a finished SFT model between the jobs of a sweep that would each train it the same way.

The reward and RL-algorithm ablations run one job per reward or algorithm, and every job starts by training
the same SFT model (same student, data, settings and seed) in its own artifact folder: for a 7B student,
hours of GPU time per job spent on a model the first job already has. With ``reuse_sft=true`` the SFT stage
looks for its model in a store keyed by everything that decides it:

- the config nodes its checkpoints are fingerprinted by (`cmt.stages.sft.FINGERPRINT_KEYS`: seed, model,
  prompt, sft, teach, benchmark, teacher, trainer),
- the bytes of the training set it reads (so a teacher that samples differently per job never matches),
- the code (`cmt.stages.common.code_version`: the commit and any uncommitted change to ``cmt/``).

A hit is hard-linked into the job's own model folder (no second copy on disk) and the stages after it read
it there as if this job had trained it; a miss trains as before and then publishes its model. A job holds
its key's lock from the lookup to the publishing, so jobs that run at the same time (joblib, SLURM) wait for
the one that trains instead of training the same model beside it. Layout:

    <artifacts>/reuse/<method>/<key>/model/          the save_pretrained folder (hard links)
    <artifacts>/reuse/<method>/<key>/training.json   the training job's metrics, time, tokens and folder
    <artifacts>/reuse/<method>/<key>.lock            held while a job looks up, trains and publishes the key

Publishing and restoring go through a temporary folder and a rename, so a reader never sees half a model.
Files are only ever replaced, never rewritten in place (`cmt.models.save_model` writes the same way), so a
later save into a job's folder cannot change the store or the other jobs' links.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cmt.atomic import publish_new, replace_folder, scratch_folder
from cmt.checkpointing import fingerprint
from cmt.filelock import exclusive
from cmt.stages.common import code_version

TRAINING_FILE = "training.json"


def reuse_key(cfg: DictConfig, keys: tuple[str, ...], data_path: Path) -> str:
    """The store key of a training run: the config nodes ``keys``, the training set's bytes and the code."""
    data = hashlib.sha1(Path(data_path).read_bytes()).hexdigest()
    parts = {"config": fingerprint(cfg, keys), "data": data, "code": code_version()}
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class StoredModel:
    """A published model: its folder and what its training job reported."""

    model_dir: Path
    training: dict[str, Any]


class ModelStore:
    """Finished models of one method under ``<artifacts>/reuse/<method>/``, one folder per key."""

    def __init__(self, artifacts: str | os.PathLike, method_name: str):
        self.root = Path(artifacts) / "reuse" / method_name

    @contextmanager
    def claim(self, key: str, waiting: str) -> Iterator[None]:
        """Hold ``key`` while this job looks for its model and, finding none, trains and publishes it: a job
        that claims the same key meanwhile prints ``waiting`` and blocks until then, and so finds the model.

        The lock is an ``flock`` on ``<key>.lock``, which the system releases when its process ends, so a
        killed job never leaves it held. On a file system that refuses locks (some parallel file systems
        are mounted so) the job says so and goes on unlocked: it still reuses a model published before it
        looks, and jobs started together may each train theirs.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive(self.root / f"{key}.lock", waiting, "jobs started together may each train this model"):
            yield

    def find(self, key: str) -> StoredModel | None:
        """The model published under ``key``, or None when there is none (or only an unreadable one)."""
        entry = self.root / key
        try:
            training = json.loads((entry / TRAINING_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not (entry / "model" / "config.json").is_file() and not (entry / "model" / "adapter_config.json").is_file():
            return None
        return StoredModel(entry / "model", training)

    def publish(self, key: str, model_dir: Path, training: dict[str, Any]) -> bool:
        """Link ``model_dir``'s files into the store under ``key`` with ``training`` beside them; False when
        another job published that key first (its model is kept: the key says both are the same)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with scratch_folder(self.root / key) as tmp:
            link_tree(model_dir, tmp / "model")
            record = {**training, "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            (tmp / TRAINING_FILE).write_text(json.dumps(record, indent=1))
            return publish_new(tmp, self.root / key)


def restore(stored: StoredModel, model_dir: Path) -> None:
    """Make ``model_dir`` hold the stored model (hard links), replacing whatever it held."""
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with scratch_folder(model_dir) as tmp:
        link_tree(stored.model_dir, tmp / "model")
        replace_folder(tmp / "model", model_dir)


def link_tree(source: Path, target: Path) -> None:
    """Copy the folder ``source`` to ``target`` (which must not exist) as hard links, or as copies where the
    file system cannot link (another device, or no hard links)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)
