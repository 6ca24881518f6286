"""``python -m cmt.results plots``, the real CLI in a subprocess (the plots themselves:
tests/unit/test_results_plots.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from cmt.results.store import append_rows
from tests.unit.test_results_plots import assert_png, rows, write_predictions


def test_plots_cli_end_to_end(tmp_path):
    store = tmp_path / "runs.jsonl"
    append_rows(store, rows())
    predictions = tmp_path / "predictions"
    for method in ("base", "comt_sft"):  # laid out as cmt.stages.evaluate writes them
        (predictions / method).mkdir(parents=True)
        write_predictions(predictions / method / "synthetic-id.jsonl", [(0.9, True), (0.3, False)])
    env = {k: v for k, v in os.environ.items() if k != "CMT_RESULTS"}
    done = subprocess.run([sys.executable, "-m", "cmt.results", "plots", "--store", str(store), "model=qwen",
                           "--out-dir", str(tmp_path / "plots"), "--predictions", str(predictions)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == ["accuracy_by_benchmark.png", "accuracy_vs_train_tokens.png", "reliability.png"]
    for name in written:
        assert_png(tmp_path / "plots" / name)
