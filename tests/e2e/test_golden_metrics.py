"""Golden metrics: one very small, seeded CoMT-SFT + CCRL run whose losses and metrics are pinned.

The run (rule teacher, a few CoMT-SFT steps, two PPO steps of CCRL on the bundled tiny model, on the CPU in
float32 with one thread) is deterministic, so every number it logs is pinned in
tests/fixtures/golden/tiny_comt_ccrl.yaml to a relative 1e-4. A change anywhere in training (data, prompts,
tokenisation, the SFT loss, sampling, the reward, advantages, the PPO loss, the optimizer, a default) that
moves any of them fails here even when every other test still passes. Time measurements are not pinned.

Regenerating the pins (only for a change that is meant to move training; the fixture's header says when):

    CMT_UPDATE_GOLDEN=1 python -m pytest tests/e2e/test_golden_metrics.py

rewrites the fixture and skips; review its diff and commit it with the change that caused it.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from cmt.stages import run
from tests.conftest import ROOT, compose_config

GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "tiny_comt_ccrl.yaml"
UPDATE = "CMT_UPDATE_GOLDEN"
REL, ABS = 1e-4, 1e-6
# Metrics that measure time or speed, not training: never pinned.
TIMING = ("time", "per_s", "timing")

# CPU and float32 everywhere: trainer.precision=auto would pick bf16 on some CPUs and not others.
BASE = ["logger=csv", "trainer.log_every_n_steps=1", "trainer.accelerator=cpu", "trainer.precision=32-true",
        "seed=0", "teach.n=24", "teach.progress=false", "benchmark.eval_n=4", "eval.max_new_tokens=16"]
STAGES = {
    "teach": ["stage=teach"],
    "sft": ["stage=comt_sft", "sft.epochs=1", "sft.batch_size=8"],
    "rl": ["stage=ccrl", "rl.steps=2", "rl.prompts_per_step=2", "rl.group_size=2", "rl.mini_batch_size=4",
           "rl.micro_batch_size=2", "rl.max_new_tokens=16", "rl.val_n=4", "rl.val_interval=2"],
}


def _is_timing(name: str) -> bool:
    return any(part in name for part in TIMING)


def _stage(root: Path, name: str) -> dict:
    """Run one stage in this process; returns its final metrics and, per logged metric, its values by step."""
    cfg = compose_config([*BASE, *STAGES[name]], root)
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / name)
    try:
        final = run(cfg)
    finally:
        GlobalHydra.instance().clear()
    steps: dict[str, dict[int, float]] = {}
    for path in sorted((root / name).glob("csv/version_*/metrics.csv")):
        with path.open() as handle:
            for row in csv.DictReader(handle):
                for key, value in row.items():
                    if key not in ("step", "epoch") and value and not _is_timing(key):
                        steps.setdefault(key, {})[int(row["step"])] = float(value)
    return {"final": {k: float(v) for k, v in sorted(final.items())
                      if isinstance(v, (int, float)) and not _is_timing(k)},
            "steps": {k: dict(sorted(v.items())) for k, v in sorted(steps.items())}}


def _measure(root: Path) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: _stage(root, name) for name in STAGES}
    finally:
        torch.set_num_threads(threads)


def _header() -> str:
    """The fixture's leading comment lines (kept when the pins are rewritten)."""
    header = []
    for line in GOLDEN.read_text().splitlines(keepends=True):
        if not line.startswith("#"):
            break
        header.append(line)
    return "".join(header)


def _mismatches(pinned, measured, where: str = "") -> list[str]:
    """Every place where ``measured`` differs from ``pinned`` (a missing or extra key, or a value off by more
    than the tolerance)."""
    if isinstance(pinned, dict) and isinstance(measured, dict):
        out = [f"{where}/{k}: missing" for k in pinned if k not in measured]
        out += [f"{where}/{k}: not pinned ({measured[k]})" for k in measured if k not in pinned]
        for k in pinned.keys() & measured.keys():
            out += _mismatches(pinned[k], measured[k], f"{where}/{k}")
        return out
    if math.isnan(pinned) and math.isnan(measured):
        return []
    if math.isclose(measured, pinned, rel_tol=REL, abs_tol=ABS):
        return []
    return [f"{where}: pinned {pinned!r}, measured {measured!r}"]


def test_a_tiny_seeded_run_reproduces_its_pinned_losses_and_metrics(tmp_path):
    measured = _measure(tmp_path)
    if os.environ.get(UPDATE):
        GOLDEN.write_text(_header() + yaml.safe_dump(measured, sort_keys=True))
        pytest.skip(f"{UPDATE} is set: rewrote {GOLDEN.relative_to(ROOT)}; review its diff and commit it")
    pinned = yaml.safe_load(GOLDEN.read_text())
    # The per-step log must exist (an empty CSV would leave only the final metrics to compare).
    assert measured["sft"]["steps"].get("train/loss"), "the SFT run logged no per-step loss"
    problems = _mismatches(pinned, measured)
    assert not problems, (f"{len(problems)} values moved (regenerate with {UPDATE}=1 only if the change is meant "
                          "to move training; see the fixture's header):\n" + "\n".join(problems[:40]))
