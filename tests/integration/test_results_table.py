"""``python -m cmt.results table``, the real CLI in a subprocess, on the rows of tests/unit/test_results_table.py."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pytest

from cmt.results.store import append_rows
from tests.unit.test_results_table import grid_rows


def run_cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "CMT_RESULTS"}
    return subprocess.run([sys.executable, "-m", "cmt.results", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_table_end_to_end(tmp_path):
    rows = grid_rows()
    store = tmp_path / "store" / "runs.jsonl"
    append_rows(store, rows)
    done = run_cli("table", "experiment=main", "--store", str(store.parent), "--format", "csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    parsed = list(csv.DictReader(io.StringIO(done.stdout)))
    (qwen,) = [r for r in parsed if r["model"] == "qwen" and r["method"] == "comt_ccrl"]
    assert float(qwen["gsm8k"]) == pytest.approx(85.0)  # the other experiment's 0.99 is filtered out
    out = tmp_path / "tables" / "main.md"
    done = run_cli("table", "--experiment", "main", "--store", str(store), "--out", str(out), "--baseline", "none",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| qwen | CoMT + CCRL | 2 | 85.00 ± 1.41 |" in out.read_text()


def test_cli_errors_name_the_producing_command_and_what_exists(tmp_path):
    rows = grid_rows()
    done = run_cli("table", cwd=tmp_path)
    assert done.returncode == 1
    assert "no result rows in results/runs/runs.jsonl" in done.stderr and "python run.py" in done.stderr
    store = tmp_path / "runs.jsonl"
    append_rows(store, rows)
    done = run_cli("table", "experiment=nope", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 1 and "experiments: main, other" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
