"""``python -m cmt.results wandb --offline``, the real CLI in a subprocess (rows read from W&B runs:
tests/unit/test_wandb_rows.py)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pytest

from cmt.results.store import append_rows
from cmt.results.wandb_report import rows_from_run
from tests.unit.test_wandb_rows import NESTED_CONFIG, summary


def test_wandb_command_offline_uses_the_local_store(tmp_path):
    store = tmp_path / "runs.jsonl"
    append_rows(store, rows_from_run({**summary("comt_ccrl", 0.9), **summary("cot_sft_rl", 0.8)}, NESTED_CONFIG, "r"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "CMT_"))}
    done = subprocess.run([sys.executable, "-m", "cmt.results", "wandb", "--offline", "experiment=paper_main",
                           "--store", str(store), "--format", "csv", "--paper", "never"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "offline mode" in done.stderr and str(store) in done.stderr
    (ours,) = [r for r in csv.DictReader(io.StringIO(done.stdout)) if r["method"] == "comt_ccrl"]
    assert float(ours["gsm8k_delta"]) == pytest.approx(10.0)
    done = subprocess.run([sys.executable, "-m", "cmt.results", "wandb", "--offline", "--report",
                           "--store", str(store)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "--report needs W&B credentials" in done.stderr
