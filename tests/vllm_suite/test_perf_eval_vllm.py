"""The perf harness's eval_vllm comparison (perf/evaluation_vllm.py), each side in its own worker process as
``python -m perf eval eval_vllm`` runs it, on the bundled tiny model and the three GSM8K fixture problems."""

import importlib.util
import json

import pytest

from perf.runner import run_worker
from perf.settings import load_settings
from tests.conftest import ROOT
from tests.vllm_suite.conftest import requires_vllm, vllm_environment

pytestmark = [pytest.mark.slow, requires_vllm]

GSM8K = ROOT / "tests" / "fixtures" / "benchmarks" / "gsm8k" / "test.jsonl"


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """The tiny model prepared once, settings for 3 problems x 24 tokens, a small engine, a private vLLM cache."""
    work = tmp_path_factory.mktemp("perf-eval-vllm")
    settings = load_settings(model="tiny", overrides=[
        "eval.n=3", "eval.max_new_tokens=24", "eval.batch_size=4", "threads=1", f"eval.data={GSM8K}",
        "vllm.max_model_len=512", f"vllm.kv_cache_memory_bytes={64 * 2**20}"])
    with pytest.MonkeyPatch.context() as patch:
        for key, value in vllm_environment(work).items():
            patch.setenv(key, value)
        prepared = run_worker("prepare", "model", settings, work)
        assert "error" not in prepared, prepared
        yield settings, work


def outputs(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_our_vllm_side_times_the_eval_and_answers_as_the_built_in_side(harness):
    settings, work = harness
    built_in = run_worker("eval", "ours", settings, work)
    with_vllm = run_worker("eval_vllm", "ours", settings, work)
    assert "error" not in built_in and "error" not in with_vllm, (built_in, with_vllm)
    assert with_vllm["n"] == 3 and with_vllm["problems_per_s"] > 0 and with_vllm["engine_start_s"] > 0
    # The engine's own processes count with the side's memory.
    assert with_vllm["peak_tree_rss_mb"] > with_vllm["peak_rss_mb"]
    # Greedy in float32: the same completions and answers as the built-in loop (the eval stage's own test).
    ours_hf, ours_vllm = outputs(work / "eval_ours.jsonl"), outputs(work / "eval_ours_vllm.jsonl")
    assert len(ours_vllm) == 3 and [r["output"] for r in ours_vllm] == [r["output"] for r in ours_hf]
    assert [r["predicted"] for r in ours_vllm] == [r["predicted"] for r in ours_hf]


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval is not installed (perf/README.md)")
def test_lm_evals_vllm_side_reads_the_same_prompts_and_generates_what_ours_does(harness):
    settings, work = harness
    if not (work / "eval_ours_vllm.jsonl").is_file():
        assert "error" not in run_worker("eval_vllm", "ours", settings, work)
    peer = run_worker("eval_vllm", "peer", settings, work)
    assert "error" not in peer, peer
    assert peer["n"] == 3 and peer["prompt_match"] == 1.0 and peer["generation_match"] == 1.0
    assert peer["answer_agreement_strict"] == 1.0
