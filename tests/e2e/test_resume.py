"""A training stage killed mid-way (SIGKILL, or SIGTERM as SLURM preempts) resumes to the same result.

Each test trains the same tiny run three ways on the CPU with a fixed seed: once uninterrupted (in this
process), once as ``python run.py`` in a subprocess that is killed after a checkpoint exists, and once more
with ``resume=auto`` (in this process). The resumed run's per-step losses, final metrics and weights must
equal the uninterrupted run's to 1e-6.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from safetensors.torch import load_file

from cmt.artifacts import checkpoint_dir
from cmt.checkpointing import PREEMPTED_EXIT, read_meta, saved
from cmt.stages import run
from tests.conftest import FAST, ROOT, compose_config

BASE = [*[o for o in FAST if not o.startswith(("logger=", "sft.", "rl."))], "logger=csv",
        "trainer.log_every_n_steps=1", "sft.batch_size=4"]
# 61 training examples in batches of 4: 16 steps an epoch, 32 in all.
SFT = [*BASE, "sft.epochs=2", "stage=cot_sft"]
RL = [*BASE, "sft.epochs=1", "stage=ccrl", "rl.steps=8", "rl.prompts_per_step=2", "rl.group_size=2",
      "rl.mini_batch_size=4", "rl.micro_batch_size=2", "rl.max_new_tokens=12", "rl.val_n=4", "rl.val_interval=3"]
# Metrics that measure time, not training.
TIMING = ("time", "per_s", "timing")


def _train(root: Path, overrides: list[str], job: str) -> dict[str, float]:
    """Run a stage in this process, as `python run.py` would, logging CSV metrics to ``root/job``."""
    cfg = compose_config(overrides, root)
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / job)
    try:
        return run(cfg)
    finally:
        GlobalHydra.instance().clear()


def _start(root: Path, overrides: list[str], job: str) -> subprocess.Popen:
    """``python run.py`` with ``overrides`` in the background, sharing ``root``'s artifacts."""
    args = [f"paths.artifacts={root}/artifacts", f"paths.results={root}/results", f"hydra.run.dir={root}/{job}",
            *overrides]
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    log = (root / f"{job}.log").open("w")
    return subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=env)


def _wait_for(process: subprocess.Popen, log: Path, condition) -> None:
    """Wait until ``condition()`` holds while ``process`` runs."""
    deadline = time.monotonic() + 300
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"training ended too early:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("timed out")
        time.sleep(0.01)


def _start_until_checkpoint(root: Path, overrides: list[str], method: str, name: str
                            ) -> tuple[subprocess.Popen, Path]:
    """Start the job ``name`` and wait until it has written a checkpoint; returns it and its checkpoint folder."""
    process = _start(root, overrides, name)
    folder = checkpoint_dir(compose_config(overrides, root), method).parent / "checkpoints"
    GlobalHydra.instance().clear()
    _wait_for(process, root / f"{name}.log", lambda: bool(saved(folder)))
    return process, folder


def _losses(job: Path, metric: str) -> dict[int, float]:
    """``step -> value`` of one metric in a job's CSV log."""
    (path,) = job.glob("csv/version_*/metrics.csv")
    with path.open() as handle:
        return {int(row["step"]): float(row[metric]) for row in csv.DictReader(handle) if row.get(metric)}


def _weights(root: Path, overrides: list[str], method: str) -> dict:
    cfg = compose_config(overrides, root)
    GlobalHydra.instance().clear()
    return load_file(checkpoint_dir(cfg, method) / "model.safetensors")


def _assert_same(resumed: dict[str, float], reference: dict[str, float]) -> None:
    keys = {k for k in reference if not any(t in k for t in TIMING)}
    assert keys == {k for k in resumed if not any(t in k for t in TIMING)}
    for key in keys:
        assert resumed[key] == pytest.approx(reference[key], abs=1e-6, nan_ok=True), key


def _assert_same_weights(resumed: dict, reference: dict) -> None:
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert (resumed[name] - tensor).abs().max() <= 1e-6, name


@pytest.fixture(scope="module")
def sft_reference(tmp_path_factory):
    """A teacher's training set and the uninterrupted CoT-SFT run on it: (root, metrics, weights, losses)."""
    root = tmp_path_factory.mktemp("resume_sft")
    _train(root, [*BASE, "stage=teach"], "teach")
    metrics = _train(root, SFT, "reference")
    return root, metrics, _weights(root, SFT, "cot_sft"), _losses(root / "reference", "train/loss")


def _resume_and_compare(root: Path, reference, checkpoint: Path, job: str) -> None:
    """Resume in this process; the steps after ``checkpoint`` must repeat the reference run's exactly."""
    _, metrics, weights, losses = reference
    step = read_meta(checkpoint)["step"]
    resumed = _train(root, SFT, job)
    after = _losses(root / job, "train/loss")
    assert sorted(after) == [s for s in sorted(losses) if s >= step]
    assert after == pytest.approx({s: losses[s] for s in after}, abs=1e-6)
    _assert_same(resumed, metrics)
    _assert_same_weights(_weights(root, SFT, "cot_sft"), weights)
    assert not saved(checkpoint.parent), "the scratch checkpoints outlive the saved model"


def test_sft_killed_after_an_epoch_end_checkpoint_resumes_to_the_same_losses_and_weights(sft_reference):
    root, *_ = sft_reference
    # Saved at the end of the first epoch: the resumed run starts the second (the SIGTERM test resumes mid-epoch).
    process, folder = _start_until_checkpoint(root, [*SFT, "checkpoint.every_n_steps=16"], "cot_sft", "killed")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    latest = saved(folder)[-1]
    assert read_meta(latest)["step"] < 32, "the run finished before it was killed"
    _resume_and_compare(root, sft_reference, latest, "resumed")


def test_sigterm_saves_a_checkpoint_exits_non_zero_and_the_run_resumes(sft_reference):
    root, *_ = sft_reference
    process, folder = _start_until_checkpoint(root, [*SFT, "checkpoint.every_n_steps=5"], "cot_sft", "terminated")
    log = root / "terminated.log"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == PREEMPTED_EXIT, log.read_text()[-3000:]
    stopped = int(re.search(r"stopped by SIGTERM at step (\d+)", log.read_text()).group(1))
    (latest,) = saved(folder)
    # Usually a step between the periodic ones: the SIGTERM saved it.
    assert read_meta(latest)["step"] == stopped < 32
    _resume_and_compare(root, sft_reference, latest, "after_sigterm")


def test_rl_killed_after_a_checkpoint_resumes_to_the_same_rewards_and_weights(tmp_path):
    _train(tmp_path, [*BASE, "stage=teach"], "teach")
    _train(tmp_path, [*BASE, "sft.epochs=1", "stage=comt_sft"], "sft")
    reference = _train(tmp_path, RL, "reference")
    weights = _weights(tmp_path, RL, "comt_ccrl")
    process, folder = _start_until_checkpoint(tmp_path, [*RL, "checkpoint.every_n_steps=2"], "comt_ccrl", "killed")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    step = read_meta(saved(folder)[-1])["step"]
    assert step < 8, "the run finished before it was killed"
    resumed = _train(tmp_path, RL, "resumed")
    _assert_same(resumed, reference)
    _assert_same_weights(_weights(tmp_path, RL, "comt_ccrl"), weights)
    for metric in ("reward/total", "train/policy_loss", "train/value_loss"):
        before, after = _losses(tmp_path / "reference", metric), _losses(tmp_path / "resumed", metric)
        assert after and after == pytest.approx({s: before[s] for s in after}, abs=1e-6), metric
