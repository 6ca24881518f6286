"""Resume a killed training stage from its latest checkpoint, exactly (``resume=auto``, ``checkpoint.*``).

The SFT and RL stages hand a `Checkpointer` to their Lightning Trainer. It saves every
``checkpoint.every_n_steps`` steps, and at the next step boundary after a SIGTERM (SLURM preemption),
through Lightning's own checkpoint (weights, optimizers, schedulers, loop counters, module and callback
state) plus the RNG states of Python, NumPy and torch; a resumed run passes it back as ``ckpt_path``.

On disk (under the method's artifact folder), one folder per checkpoint:

    <method>/checkpoints/step-00000050/weights.safetensors   the module's tensors (safetensors)
                                       state.pt              everything else: loaded with weights_only=True
                                       meta.json             config fingerprint and data position

A checkpoint is written into a scratch folder beside it (``.step-00000050.tmp-<hex>``, `cmt.atomic`), fsync-ed
and renamed, so a kill during the write leaves the previous checkpoint whole. Lightning restores loop counters
but not the data position of a plain loader: the stage reads ``meta.json`` (`ResumePoint`) and builds its
batch sampler to skip the batches the killed run already trained on.

Why a callback of ours rather than Lightning's ``ModelCheckpoint`` with SLURM auto-requeue: what is saved is
Lightning's own checkpoint, through a `CheckpointIO` plugin (safetensors, atomic), so only the *when* and
the lookup are ours. ``ModelCheckpoint`` saves every n steps but not on SIGTERM; Lightning's requeue saves on
SLURM's ``--signal`` only, under SLURM only, and resumes whatever checkpoint it finds. A resume must also
refuse a checkpoint of another training config (the fingerprint) and know the data position, which
``ModelCheckpoint`` does not record; one callback keeps the schedule, the SIGTERM save and that record together.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import CheckpointIO
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cmt.atomic import replace_folder, scratch_folder

WEIGHTS, STATE, META = "weights.safetensors", "state.pt", "meta.json"
PREFIX = "step-"
# Where the Checkpointer puts its metadata in Lightning's checkpoint dict (written as meta.json).
META_KEY = "cmt_resume"
# The exit status of a run stopped by SIGTERM after saving its checkpoint (128 + 15, as the shell reports it).
PREEMPTED_EXIT = 143


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint to resume from and where in the data it stopped.

    Attributes:
        path: The checkpoint folder (``ckpt_path`` of ``trainer.fit``).
        epoch: The epoch it was saved in.
        batches_in_epoch: Batches of that epoch already trained on (the sampler skips them).
        step: Batches trained on in all.
    """

    path: Path
    epoch: int
    batches_in_epoch: int
    step: int


def fingerprint(cfg: DictConfig, keys: tuple[str, ...]) -> str:
    """A hash of the config nodes ``keys`` (resolved): a checkpoint made under other values is not resumed."""
    values = {}
    for key in keys:
        node = OmegaConf.select(cfg, key)
        values[key] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- files


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _split_shared(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors with unique storage, and ``alias -> name`` for the rest (tied embeddings: safetensors stores
    a storage once)."""
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, tensor in tensors.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            unique[name] = tensor.detach().contiguous().cpu()
    return unique, aliases


def write_checkpoint(checkpoint: dict[str, Any], folder: Path, keep: int) -> None:
    """Write Lightning's ``checkpoint`` dict to ``folder`` atomically, then keep only the newest ``keep``.

    The module's tensors go to safetensors, the rest to ``torch.save`` (plain containers and tensors only,
    so that `read_checkpoint` can load it with ``weights_only=True``), the Checkpointer's metadata to JSON.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    rest = dict(checkpoint)
    tensors, aliases = _split_shared(rest.pop("state_dict"))
    meta = {**rest.pop(META_KEY, {}), "aliases": aliases}
    with scratch_folder(folder) as tmp:
        save_file(tensors, tmp / WEIGHTS)
        torch.save(rest, tmp / STATE)
        (tmp / META).write_text(json.dumps(meta, indent=1))
        for name in (WEIGHTS, STATE, META):
            _fsync(tmp / name)
        _fsync(tmp)
        replace_folder(tmp, folder)
    _fsync(folder.parent)
    prune(folder.parent, keep)


def read_checkpoint(folder: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Lightning's checkpoint dict from a folder of `write_checkpoint`, without unpickling arbitrary objects.

    Tensors load onto the CPU by default (Lightning passes no location): otherwise every process of a
    multi-GPU run would load the whole optimizer state onto the GPU it was saved from, and a GPU checkpoint
    would not load on a machine without one. The optimizers move their state to their parameters' device.
    """
    folder = Path(folder)
    checkpoint = torch.load(folder / STATE, map_location=map_location, weights_only=True)
    state_dict = load_file(folder / WEIGHTS)
    meta = read_meta(folder)
    for alias, name in meta.pop("aliases", {}).items():
        state_dict[alias] = state_dict[name]
    checkpoint["state_dict"] = state_dict
    checkpoint[META_KEY] = meta
    return checkpoint


def read_meta(folder: Path) -> dict[str, Any]:
    """The metadata of one checkpoint (fingerprint, data position)."""
    return json.loads((Path(folder) / META).read_text())


def saved(root: Path) -> list[Path]:
    """The complete checkpoints under ``root``, oldest first (temporary folders are never complete)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / META).is_file())


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, and temporary folders that a killed write left."""
    for old in saved(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob(f".{PREFIX}*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


class SafeCheckpointIO(CheckpointIO):
    """Lightning's checkpoint I/O in the folder format of `write_checkpoint` (safetensors + weights-only).

    Lightning also passes it a bare state dict: ``ddp_spawn`` hands the trained weights from the first
    process back to the job's process through the checkpoint I/O, as a file. That one is written as a
    single safetensors file and read back as the same state dict.
    """

    def __init__(self, keep: int):
        self.keep = keep

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if "state_dict" in checkpoint:
            write_checkpoint(checkpoint, Path(path), self.keep)
        else:
            tensors, aliases = _split_shared(checkpoint)
            save_file(tensors, str(path), metadata={"aliases": json.dumps(aliases)})

    def load_checkpoint(self, path, map_location: Any = "cpu", weights_only: bool | None = None) -> dict[str, Any]:
        if Path(path).is_file():
            return read_state_dict(Path(path))
        return read_checkpoint(Path(path), map_location)

    def remove_checkpoint(self, path) -> None:
        if Path(path).is_file():
            Path(path).unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A bare state dict that `SafeCheckpointIO` saved as one file, tied tensors tied again."""
    with safe_open(str(path), framework="pt") as handle:
        aliases = json.loads((handle.metadata() or {}).get("aliases", "{}"))
    state_dict = load_file(str(path))
    for alias, name in aliases.items():
        state_dict[alias] = state_dict[name]
    return state_dict


# ---------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """The RNG states of Python, NumPy and torch (CPU and CUDA) as plain containers and tensors."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"name": name, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        # One state per GPU the saving process saw; a resumed job may see fewer.
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


# ---------------------------------------------------------------- the callback


class Checkpointer(pl.Callback):
    """Save a resumable checkpoint every ``every_n_steps`` batches and after a SIGTERM.

    Args:
        root: The folder of this method's checkpoints.
        fingerprint: The training config's `fingerprint`, stored in every checkpoint.
        every_n_steps: Save after every this many batches (0: only after a SIGTERM).
        keep: Checkpoints kept (the newest).
    """

    def __init__(self, root: Path, fingerprint: str, every_n_steps: int, keep: int):
        self.root, self.fingerprint = Path(root), fingerprint
        self.every_n_steps, self.keep = int(every_n_steps), int(keep)
        self.io = SafeCheckpointIO(self.keep)
        self._restored_rng: dict[str, Any] | None = None
        self._saved_step = -1
        # Training seconds of the killed runs this one resumes (for the result rows' train_time_s), read by
        # `resume_point` in the job's own process: under ddp_spawn, training runs in other processes.
        self.earlier_time_s = 0.0
        self._started = time.perf_counter()

    @classmethod
    def from_config(cls, cfg: DictConfig, model_dir: Path, keys: tuple[str, ...]) -> Checkpointer:
        """The Checkpointer of the stage that saves its model to ``model_dir``, fingerprinting the config
        nodes ``keys``; its checkpoints go to ``checkpoints/`` beside ``model_dir``. The ``checkpoint`` and
        ``resume`` keys were checked by `cmt.validation` before the job started."""
        return cls(Path(model_dir).parent / "checkpoints", fingerprint(cfg, keys),
                   int(cfg.checkpoint.every_n_steps), int(cfg.checkpoint.keep))

    def resume_point(self, mode: str) -> ResumePoint | None:
        """The latest checkpoint of this run to resume from under ``resume=mode``, or None to start fresh.

        Starting fresh deletes the old checkpoints (so that they never mix with the new run's); a checkpoint
        made under another training config is not resumed, and one line says so. Resuming sets
        ``earlier_time_s`` to the training seconds the checkpoint records.
        """
        latest = (saved(self.root) or [None])[-1]
        if latest is None:
            return None
        meta = read_meta(latest)
        if mode == "auto" and meta["fingerprint"] == self.fingerprint:
            print(f"resuming from {latest} (step {meta['step']})")
            self.earlier_time_s = float(meta.get("train_time_s", 0.0))
            return ResumePoint(latest, int(meta["epoch"]), int(meta["batches_in_epoch"]), int(meta["step"]))
        why = "resume=never" if mode == "never" else "it was made with a different training config"
        print(f"not resuming from {latest}: {why}; starting fresh")
        self.clear()
        return None

    def clear(self) -> None:
        """Delete this method's scratch checkpoints (once its final model is saved)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def fit(self, trainer: pl.Trainer, module: pl.LightningModule, resume: ResumePoint | None, **data: Any) -> None:
        """``trainer.fit`` from ``resume`` (or from scratch); a SIGTERM ends the process with status 143.

        Lightning stops at the step boundary after a SIGTERM, once this callback has saved, by raising a
        ``SystemExit`` whose status is 0; a scheduler would take that for success and never requeue the job.
        """
        try:
            with warnings.catch_warnings():
                # Lightning warns that a plain loader cannot resume mid-epoch: the stages' samplers skip the
                # batches already trained on (ResumePoint.batches_in_epoch).
                warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch")
                trainer.fit(module, ckpt_path=str(resume.path) if resume else None, **data)
        except SIGTERMException:
            print(f"stopped by SIGTERM at step {_step(trainer)}, checkpoint saved in {self.root}; run the same command "
                  f"again to resume (exit {PREEMPTED_EXIT})")
            raise SystemExit(PREEMPTED_EXIT) from None

    # ------------------------------------------------------------ Lightning hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()
        if self._restored_rng is not None:
            set_rng_state(self._restored_rng)
            self._restored_rng = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if _last_batch(trainer):
            return  # the stage saves its final model right after
        periodic = self.every_n_steps and _step(trainer) % self.every_n_steps == 0
        # Several processes learn of a SIGTERM together only at the next batch (Lightning broadcasts it and
        # raises); they save then, in on_exception, since a save every process does not join would hang.
        if periodic or (trainer.received_sigterm and trainer.world_size == 1):
            self._save(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # A SIGTERM that came after this step's on_train_batch_end (during validation, say): Lightning stops
        # at the next boundary without passing through it again, so save here.
        if isinstance(exception, SIGTERMException):
            self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        """Save the checkpoint of the current step, unless this run already did."""
        step = _step(trainer)
        if step != self._saved_step:
            # The full state (optimizer, loops), said explicitly so Lightning does not log that it chose it.
            trainer.save_checkpoint(self.root / f"{PREFIX}{step:08d}", weights_only=False)
            self._saved_step = step

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[META_KEY] = {"fingerprint": self.fingerprint, "step": _step(trainer), "epoch": trainer.current_epoch,
                                "batches_in_epoch": trainer.fit_loop.epoch_loop.batch_progress.current.ready,
                                "train_time_s": self.earlier_time_s + time.perf_counter() - self._started}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_rng = state_dict["rng"]


def _step(trainer: pl.Trainer) -> int:
    """Batches trained on so far, over all epochs (and over the runs this one resumes)."""
    return trainer.fit_loop.epoch_loop.batch_progress.total.ready


def _last_batch(trainer: pl.Trainer) -> bool:
    """Whether the batch just trained is the fit's last (the last batch of the last epoch)."""
    return (trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
            and trainer.current_epoch + 1 >= (trainer.max_epochs or 1))
