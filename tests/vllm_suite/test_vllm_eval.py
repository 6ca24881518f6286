"""``python run.py stage=eval eval.backend=vllm`` against ``eval.backend=hf``, through the real CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.vllm_suite.conftest import ENGINE_OVERRIDES, requires_vllm, vllm_environment

pytestmark = [pytest.mark.slow, requires_vllm]
# Problems per split of the CLI comparison: 5 synthetic splits x 4 greedy answers on each backend.
EVAL_N = 4


def run_eval(tmp_path, model, backend):
    folder = tmp_path / backend
    args = [sys.executable, "run.py", "stage=eval", f"model={model}", "model.dtype=float32", f"eval.backend={backend}",
            f"benchmark.eval_n={EVAL_N}", "eval.max_new_tokens=48", "logger=none", *ENGINE_OVERRIDES,
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
        assert len(records) == EVAL_N
        assert [r["output"] for r in vllm[split]] == [r["output"] for r in records], split
        assert [r["output_tokens"] for r in vllm[split]] == [r["output_tokens"] for r in records], split
        assert [r["predicted"] for r in vllm[split]] == [r["predicted"] for r in records], split
        # Answer confidence comes from each backend's own log-probs: equal up to float32 rounding.
        assert [r["confidence"] for r in vllm[split]] == pytest.approx([r["confidence"] for r in records], abs=1e-3)
    assert [r["accuracy"] for r in vllm_rows] == [r["accuracy"] for r in hf_rows]


def test_vllm_generates_a_plan_then_execute_method_as_the_built_in_loop_does(tmp_path, cfg_factory, tiny,
                                                                             monkeypatch):
    """A checkpoint saved with ``trace.json`` (plan_execute, as CCRL saves it) is generated in its two phases by
    either backend; greedy in float32, the saved outputs (plan + cue + execution) are the same."""
    from cmt.artifacts import checkpoint_dir
    from cmt.models import save_model
    from cmt.stages import evaluate as eval_stage
    from cmt.stages.common import StageContext
    from cmt.trace import TraceProtocol

    for key, value in vllm_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    model, tokenizer = tiny
    outputs = {}
    for backend in ("hf", "vllm"):
        cfg = cfg_factory(["stage=eval", "eval.methods=[comt_ccrl]", "benchmark.eval_n=6", "eval.max_new_tokens=24",
                           "logger=none", "model.dtype=float32", f"eval.backend={backend}", *ENGINE_OVERRIDES])
        folder = checkpoint_dir(cfg, "comt_ccrl")
        save_model(model, tokenizer, folder)
        TraceProtocol("plan_execute", "The answer is", "\nExecution:").save(folder)
        eval_stage.run(StageContext(cfg=cfg, logger=None, run_id=backend))
        saved = sorted((Path(cfg.paths.output_dir) / "predictions" / "comt_ccrl").glob("*.jsonl"))
        outputs[backend] = [json.loads(line)["output"] for path in saved for line in path.read_text().splitlines()]
    assert len(outputs["hf"]) >= 12 and all("\nExecution:" in output for output in outputs["hf"])
    assert outputs["vllm"] == outputs["hf"]


def test_a_lora_checkpoint_evaluated_merged_by_vllm_answers_as_the_built_in_loop(tmp_path, cfg_factory, tiny,
                                                                               monkeypatch):
    """``vllm.lora=merged`` (the CPU default): a LoRA checkpoint is folded into full weights for the engine; its
    greedy outputs are the built-in loop's over the PEFT model, and the scratch weights are removed after."""
    import torch
    from peft import LoraConfig, get_peft_model

    from cmt.artifacts import checkpoint_dir
    from cmt.models import save_model
    from cmt.stages import evaluate as eval_stage
    from cmt.stages.common import StageContext

    for key, value in vllm_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    model, tokenizer = tiny
    torch.manual_seed(0)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    outputs = {}
    for backend in ("hf", "vllm"):
        cfg = cfg_factory(["stage=eval", "eval.methods=[cot_sft]", "benchmark.eval_n=6", "eval.max_new_tokens=24",
                           "logger=none", "model.dtype=float32", f"eval.backend={backend}", "vllm.lora=merged",
                           *ENGINE_OVERRIDES])
        save_model(lora, tokenizer, checkpoint_dir(cfg, "cot_sft"))
        assert (checkpoint_dir(cfg, "cot_sft") / "adapter_config.json").is_file()
        eval_stage.run(StageContext(cfg=cfg, logger=None, run_id=backend))
        saved = sorted((Path(cfg.paths.output_dir) / "predictions" / "cot_sft").glob("*.jsonl"))
        outputs[backend] = [json.loads(line)["output"] for path in saved for line in path.read_text().splitlines()]
        assert not (Path(cfg.paths.output_dir) / "vllm-merged").exists() or not any(
            (Path(cfg.paths.output_dir) / "vllm-merged").iterdir())
    assert len(outputs["hf"]) >= 12
    assert outputs["vllm"] == outputs["hf"]


def test_the_engine_returns_ids_and_log_probs_and_leaves_decoding_to_us(tiny):
    """Completions are decoded from their ids by our tokenizer, so the engine's own detokenizer is off."""
    from cmt.eval.vllm_backend import sampling_params, stop_ids

    _, tokenizer = tiny
    params = sampling_params(tokenizer, 24)
    assert params.detokenize is False and params.logprobs == 0 and params.temperature == 0.0
    assert params.max_tokens == 24 and sorted(params.stop_token_ids) == stop_ids(tokenizer)
