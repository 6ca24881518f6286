"""Checkpoint files, resume decisions and resumable samplers (`cmt.checkpointing`, issue #8)."""

from __future__ import annotations

import os
import pickle
import random
import signal

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from cmt.checkpointing import (
    META_KEY,
    Checkpointer,
    SafeCheckpointIO,
    fingerprint,
    read_checkpoint,
    read_meta,
    rng_state,
    saved,
    set_rng_state,
    write_checkpoint,
)
from cmt.data.distributed import DistributedLengthGroupedSampler
from cmt.data.sft import LengthGroupedSampler
from cmt.stages.rl import StepBatches


def _checkpoint(step: int, fp: str = "abc", **extra) -> dict:
    """A Lightning-shaped checkpoint dict with tied weights (as the tiny model's embeddings and head)."""
    embedding = torch.full((4, 3), float(step))
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(4, 3)}},
                 "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "params": [0]}]}
    return {"state_dict": {"model.embed.weight": embedding, "model.head.weight": embedding,
                           "model.bias": torch.arange(3.0)},
            "optimizer_states": [optimizer], "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 1}}}},
            META_KEY: {"fingerprint": fp, "step": step, "epoch": 0, "batches_in_epoch": step}, **extra}


def test_a_checkpoint_round_trips_through_safetensors_and_a_weights_only_load(tmp_path):
    write_checkpoint(_checkpoint(5), tmp_path / "step-00000005", keep=1)
    loaded = read_checkpoint(tmp_path / "step-00000005")
    weights = loaded["state_dict"]
    assert set(weights) == {"model.embed.weight", "model.head.weight", "model.bias"}
    assert torch.equal(weights["model.head.weight"], torch.full((4, 3), 5.0))
    assert loaded["optimizer_states"][0]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert loaded[META_KEY]["fingerprint"] == "abc"


def test_a_bare_state_dict_round_trips_as_one_file_with_its_tied_weights(tmp_path):
    """What ddp_spawn hands back from its first process: the module's state dict alone, through this I/O."""
    io, path = SafeCheckpointIO(keep=1), tmp_path / "tmp" / ".temp.ckpt"
    path.parent.mkdir()
    state_dict = _checkpoint(7)["state_dict"]
    io.save_checkpoint(state_dict, path)
    loaded = io.load_checkpoint(path)
    assert set(loaded) == set(state_dict)
    assert all(torch.equal(loaded[name], state_dict[name]) for name in state_dict)
    assert loaded["model.head.weight"] is loaded["model.embed.weight"]
    io.remove_checkpoint(path)
    assert not path.exists()


class _Payload:
    """An object that only an unsafe unpickler would rebuild."""


def test_reading_refuses_pickled_objects(tmp_path):
    write_checkpoint(_checkpoint(1, payload=_Payload()), tmp_path / "step-00000001", keep=1)
    with pytest.raises(pickle.UnpicklingError):
        read_checkpoint(tmp_path / "step-00000001")


def test_an_interrupted_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    write_checkpoint(_checkpoint(1), tmp_path / "step-00000001", keep=1)
    # torch.save fails half-way through the second checkpoint (the weights are already written).
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        write_checkpoint(_checkpoint(2, payload=lambda: None), tmp_path / "step-00000002", keep=1)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # an exception cleans up
    (tmp_path / ".step-00000002.tmp-0123456789ab").mkdir()  # what a kill mid-write leaves
    assert saved(tmp_path) == [tmp_path / "step-00000001"]
    resume = Checkpointer(tmp_path, "abc", every_n_steps=1, keep=1).resume_point("auto")
    assert resume is not None and resume.step == 1
    assert torch.equal(read_checkpoint(resume.path)["state_dict"]["model.bias"], torch.arange(3.0))
    # The next complete write replaces the old checkpoint and clears the torn one.
    write_checkpoint(_checkpoint(3), tmp_path / "step-00000003", keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000003"]


def test_keep_bounds_the_checkpoints_and_the_newest_is_resumed(tmp_path):
    for step in (2, 4, 6):
        write_checkpoint(_checkpoint(step), tmp_path / f"step-{step:08d}", keep=2)
    assert [read_meta(p)["step"] for p in saved(tmp_path)] == [4, 6]
    assert Checkpointer(tmp_path, "abc", every_n_steps=2, keep=2).resume_point("auto").step == 6


@pytest.mark.parametrize("fp, mode, why", [("other", "auto", "different training config"),
                                           ("abc", "never", "resume=never")])
def test_a_checkpoint_of_another_config_or_resume_never_starts_fresh(tmp_path, capsys, fp, mode, why):
    write_checkpoint(_checkpoint(4), tmp_path / "step-00000004", keep=1)
    assert Checkpointer(tmp_path, fp, every_n_steps=1, keep=1).resume_point(mode) is None
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("not resuming") and why in line
    assert not saved(tmp_path), "old checkpoints would mix with the new run's"


def test_the_fingerprint_follows_training_settings_only(cfg_factory):
    keys = ("seed", "sft", "model")
    base = fingerprint(cfg_factory([]), keys)
    assert fingerprint(cfg_factory(["checkpoint.every_n_steps=7", "resume=never", "logger=csv"]), keys) == base
    assert fingerprint(cfg_factory(["sft.optimizer.lr=0.5"]), keys) != base
    assert fingerprint(cfg_factory(["seed=1"]), keys) != base


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_a_resumed_sampler_yields_the_rest_of_its_epoch_then_whole_epochs():
    lengths = [random.Random(0).randint(5, 50) for _ in range(23)]
    reference = LengthGroupedSampler(lengths, 4, seed=3)
    epochs = [list(reference) for _ in range(3)]
    sampler = LengthGroupedSampler(lengths, 4, seed=3)
    sampler.resume(1, 2)
    assert len(sampler) == 6
    assert list(sampler) == epochs[1][2:]
    assert list(sampler) == epochs[2]
    finished = LengthGroupedSampler(lengths, 4, seed=3)
    finished.resume(0, 6)
    assert list(finished) == epochs[1]


def test_a_resumed_distributed_sampler_skips_the_same_global_batches():
    lengths = list(range(10, 50))
    full = list(DistributedLengthGroupedSampler(lengths, 2, seed=0, num_replicas=2, rank=1))
    sampler = DistributedLengthGroupedSampler(lengths, 2, seed=0, num_replicas=2, rank=1)
    sampler.resume(0, 3)
    assert list(sampler) == full[3:] and len(sampler) == len(full)


def test_resumed_rl_steps_skip_the_steps_taken():
    batches = StepBatches(list(range(12)), 3, start=2)
    assert len(batches) == 4
    assert list(batches) == [[6, 7, 8], [9, 10, 11]]


class _Regression(pl.LightningModule):
    """A linear model whose validation can send this process a SIGTERM (as SLURM would) once."""

    def __init__(self, sigterm_at_step: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 1)
        self.sigterm_at_step = sigterm_at_step

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.linear(x + 0.1 * torch.randn_like(x)).squeeze(-1), y)

    def validation_step(self, batch, batch_idx):
        if self.trainer.global_step == self.sigterm_at_step:
            os.kill(os.getpid(), signal.SIGTERM)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.1)


def _fit(root, module, resume=False):
    """Fit ``module`` as the stages do, resuming from the latest checkpoint under ``root`` when asked."""
    checkpointer = Checkpointer(root, "abc", every_n_steps=0, keep=1)
    point = checkpointer.resume_point("auto") if resume else None
    data = torch.utils.data.TensorDataset(torch.linspace(-1, 1, 30).reshape(10, 3), torch.linspace(0, 1, 10))
    loader = torch.utils.data.DataLoader(data, batch_sampler=StepBatches(list(range(10)) * 2, 2,
                                                                         start=point.batches_in_epoch if point else 0))
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         val_check_interval=4, callbacks=[checkpointer], plugins=[checkpointer.io],
                         num_sanity_val_steps=0, accelerator="cpu", enable_checkpointing=False)
    checkpointer.fit(trainer, module, point, train_dataloaders=loader, val_dataloaders=loader)
    return checkpointer


def test_a_sigterm_during_validation_saves_after_it_and_the_run_resumes_exactly(tmp_path):
    torch.manual_seed(1)
    reference = _Regression()
    _fit(tmp_path / "reference", reference)
    torch.manual_seed(1)
    with pytest.raises(SystemExit) as stopped:
        _fit(tmp_path / "run", _Regression(sigterm_at_step=4))
    assert stopped.value.code == 143
    resume = Checkpointer(tmp_path / "run", "abc", every_n_steps=0, keep=1).resume_point("auto")
    assert resume is not None and resume.step == 4
    earlier = read_meta(resume.path)["train_time_s"]
    assert earlier > 0
    resumed = _Regression()
    checkpointer = _fit(tmp_path / "run", resumed, resume=True)
    # The killed run's training time, known before fit: the job's process reads it even when another
    # process trains (ddp_spawn), for the result row's train_time_s.
    assert checkpointer.earlier_time_s == earlier
    assert resumed.trainer.global_step == reference.trainer.global_step == 10
    for mine, theirs in zip(resumed.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)
