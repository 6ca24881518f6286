"""`python run.py stage=eval` with few-shot prompts and several samples per problem, on the tiny model."""

import json
import subprocess
import sys

import pytest

from tests.conftest import FAST, ROOT

pytestmark = pytest.mark.slow


def test_sampled_few_shot_eval_reports_pass_at_k_and_majority_accuracy(tmp_path):
    args = [f"paths.artifacts={tmp_path}/artifacts", f"paths.results={tmp_path}/results",
            f"hydra.run.dir={tmp_path}/job", *FAST,
            "stage=eval", "eval.samples=3", "eval.temperature=1.0", "prompt.shots=2"]
    env = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "run.py", *args], check=False, cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert rows and all(r["method"] == "base" and r["n"] == 8 and r["samples"] == 3 for r in rows)
    assert all(0 <= r["pass_at_k"] <= 1 and 0 <= r["majority_accuracy"] <= 1 for r in rows)
    assert all(r["pass_at_k"] >= r["accuracy"] == r["pass_at_1"] for r in rows)
    predictions = (tmp_path / "job" / "predictions" / "base").glob("*.jsonl")
    records = [json.loads(line) for line in next(iter(predictions)).read_text().splitlines()]
    assert len(records) == 8 * 3 and [r["sample"] for r in records[:3]] == [0, 1, 2]
