"""``python run.py stage=eval eval.backend=vllm`` against ``eval.backend=hf``, through the real CLI."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.vllm_suite.conftest import ENGINE_OVERRIDES, requires_vllm, vllm_environment

pytestmark = [pytest.mark.slow, requires_vllm]


def run_eval(tmp_path, model, backend):
    folder = tmp_path / backend
    args = [sys.executable, "run.py", "stage=eval", f"model={model}", "model.dtype=float32", f"eval.backend={backend}",
            "benchmark.eval_n=12", "eval.max_new_tokens=48", "logger=none", *ENGINE_OVERRIDES,
            f"paths.artifacts={folder}/artifacts", f"paths.results={folder}/results", f"hydra.run.dir={folder}/job"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900, env=vllm_environment(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    predictions = {}
    for path in sorted((folder / "job" / "predictions" / "base").glob("*.jsonl")):
        predictions[path.name] = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [json.loads(line) for line in (folder / "results" / "runs.jsonl").read_text().splitlines()]
    return predictions, rows


def test_vllm_greedy_answers_equal_the_built_in_loops_in_float32(tmp_path, model_name):
    hf, hf_rows = run_eval(tmp_path, model_name, "hf")
    vllm, vllm_rows = run_eval(tmp_path, model_name, "vllm")
    assert list(hf) == list(vllm) and len(hf) >= 2
    for split, records in hf.items():
        assert len(records) == 12
        assert [r["output"] for r in vllm[split]] == [r["output"] for r in records], split
        assert [r["output_tokens"] for r in vllm[split]] == [r["output_tokens"] for r in records], split
        assert [r["predicted"] for r in vllm[split]] == [r["predicted"] for r in records], split
        # Answer confidence comes from each backend's own log-probs: equal up to float32 rounding.
        assert [r["confidence"] for r in vllm[split]] == pytest.approx([r["confidence"] for r in records], abs=1e-3)
    assert [r["accuracy"] for r in vllm_rows] == [r["accuracy"] for r in hf_rows]
