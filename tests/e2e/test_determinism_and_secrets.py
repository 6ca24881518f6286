"""Two runs of the tiny pipeline with the same seed give the same results, and no secret reaches a file.

The environment carries recognisable API keys; afterwards every file either run wrote (artifacts, result
rows, the job folders with their logs, saved configs and offline W&B files) is searched for them.
"""

import json
import subprocess
import sys

import pytest

from tests.conftest import FAST, ROOT

pytestmark = pytest.mark.slow

# Recognisable fake values (not shaped like real keys, so no secret scanner mistakes them for leaks).
SECRETS = {"OPENAI_API_KEY": "fake-openai-key-for-cmt-tests-0f9e8d", "HF_TOKEN": "fake-hf-token-for-cmt-tests-7c6b5a"}
# Metrics that measure time, not results.
TIMINGS = {"eval_time_s", "train_time_s"}


def _pipeline(root, name):
    args = [f"paths.artifacts={root}/{name}/artifacts", f"paths.results={root}/{name}/results",
            f"hydra.run.dir={root}/{name}/job", *[o for o in FAST if not o.startswith("logger=")], "logger=wandb"]
    env = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", **SECRETS}
    out = subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (root / name / "results" / "runs.jsonl").read_text().splitlines()]
    return out, {(r["method"], r["split"]): {k: v for k, v in r.items()
                                             if isinstance(v, float) and k not in TIMINGS} for r in rows}


def test_same_seed_same_results_and_no_secret_in_any_written_file(tmp_path):
    first_out, first = _pipeline(tmp_path, "first")
    second_out, second = _pipeline(tmp_path, "second")
    assert first and first == second
    leaks = []
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaks += [f"{path}: {name}" for name, value in SECRETS.items() if value.encode() in data]
    for out in (first_out, second_out):
        leaks += [f"output: {name}" for name, value in SECRETS.items() if value in out.stdout + out.stderr]
    assert not leaks
    assert any(tmp_path.rglob("offline-run-*")), "the W&B run files must be among the searched files"
