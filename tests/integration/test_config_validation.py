"""``python run.py`` with a bad value: one error line before any work (the checks themselves:
tests/unit/test_config_validation.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_run_py_fails_fast_with_one_error_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "run.py", "sft.optimizer.lr=-1", "logger=none", f"paths.artifacts={tmp_path}/artifacts",
         f"paths.results={tmp_path}/results", f"hydra.run.dir={tmp_path}/job"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 1, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: sft.optimizer.lr=-1: "), out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    # Nothing ran: no pipeline step started, no artifact written, no result row appended.
    assert "pipeline step" not in out.stdout
    assert not (tmp_path / "artifacts").exists()
    assert not (tmp_path / "results" / "runs.jsonl").exists()
