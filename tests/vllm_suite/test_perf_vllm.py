"""The performance harness's bare parts of an RL step with vLLM rollouts (perf/limit_vllm.py) on a real engine."""

import copy

import pytest
import torch

from cmt.generation import left_pad, sample
from tests.vllm_suite.conftest import requires_vllm

pytestmark = [pytest.mark.slow, requires_vllm]


def test_bare_vllm_parts_generate_train_and_sync_the_engine_to_the_updated_weights(tmp_path):
    """One engine started as the harness starts ours: the bare generate lays completions out prompt by prompt,
    the forward/backward runs over them, and after the bare weight sync the engine's greedy outputs are the
    updated model's (a sync that missed a tensor, or the tied output layer, would not give them)."""
    from cmt.stages.rl import rollout_engine
    from perf import data, limit_vllm, models, rl
    from perf.settings import load_settings

    settings = load_settings(model="tiny", overrides=["rl.max_new_tokens=12", "vllm.kv_cache_memory_bytes=67108864"])
    models.prepare("tiny", "float32", tmp_path / "model")
    model, tokenizer = models.load(tmp_path / "model", "float32", "cpu")
    engine = rollout_engine(rl.compose(settings, str(tmp_path), "vllm"), str(tmp_path / "model"), model, tokenizer)
    try:
        prompts = [data.render(p.question, tokenizer) for p in data.synthetic_problems(2, 0)]
        seconds, completions = limit_vllm.vllm_generate(engine.llm, tokenizer, prompts, 3, 12, 1.0, seed=0)
        assert seconds > 0 and len(completions) == 6 and all(1 <= len(c) <= 12 for c in completions)
        sequences, prompt_mask, mask = limit_vllm.padded(tokenizer, prompts, completions, 3, "cpu")
        assert torch.equal(mask.sum(1), torch.tensor([len(c) for c in completions]))
        assert torch.equal(sequences[:3, :prompt_mask.shape[1]], sequences[2:3, :prompt_mask.shape[1]].expand(3, -1))
        parts = limit_vllm.forward_backward(model, sequences, prompt_mask, mask, 1.0, 4, "cpu")
        assert parts["forward_backward_s"] > 0 and all(p.grad is None for p in model.parameters())

        updated = copy.deepcopy(model).eval()
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for parameter in updated.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
        eos = sorted({tokenizer.eos_token_id, tokenizer.pad_token_id})
        expected = sample(updated, **left_pad(tokenizer, prompts), max_new_tokens=12, eos_ids=eos,
                          pad_id=tokenizer.pad_token_id)
        _, before = limit_vllm.vllm_generate(engine.llm, tokenizer, prompts, 1, 12, 0.0, seed=0)
        assert limit_vllm.sync_weights(engine.llm, updated, tmp_path / "sync", "float32") > 0
        _, after = limit_vllm.vllm_generate(engine.llm, tokenizer, prompts, 1, 12, 0.0, seed=0)
        wanted = [expected.tokens[i, :int(expected.lengths[i])].tolist() for i in range(len(prompts))]
        assert after == wanted and before != wanted
    finally:
        engine.close()
