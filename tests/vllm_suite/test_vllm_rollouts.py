"""RL rollouts from a colocated vLLM engine (cmt.rl.vllm_rollouts) against the built-in sampler and the trainer."""

import copy

import pytest
import torch

from cmt.generation import left_pad, sample
from cmt.models import load_model
from cmt.rl.vllm_rollouts import VLLMRollouts, truncated_importance_weights
from cmt.vllm_engine import engine_options
from tests.vllm_suite.conftest import model_folder, requires_vllm

pytestmark = [pytest.mark.slow, requires_vllm]

PROMPTS = ["Question: Mia has 12 apples. She buys 5 bags with 3 apples in each. How many apples does she have?\n"
           "Answer:", "Question: Leo had 30 stickers and gave 9 away. How many are left?\nAnswer:"]
ENGINE = {"max_model_len": 512, "kv_cache_memory_bytes": 64 * 2**20}


@pytest.fixture(scope="module")
def rollouts(tmp_path_factory):
    """One engine for the module, on the tiny model in float32, and the trainer's copy of the same model."""
    folder = model_folder("tiny")
    policy, tokenizer = load_model({"source": folder, "path": None, "dtype": "float32", "lora": {"enabled": False}})
    engine = VLLMRollouts(folder, tokenizer, engine_options(ENGINE, "float32", 0), tmp_path_factory.mktemp("sync"))
    yield engine, policy, tokenizer
    engine.close()


def trainer_logprobs(model, tokenizer, prompts, sampled, num_samples, temperature):
    """(B, T) log-probs of the sampled tokens under ``model``'s forward at ``temperature``."""
    inputs = left_pad(tokenizer, prompts)
    prompt_ids = inputs["input_ids"].repeat_interleave(num_samples, 0)
    prompt_mask = inputs["attention_mask"].repeat_interleave(num_samples, 0)
    mask = torch.arange(sampled.tokens.shape[1])[None] < sampled.lengths[:, None]
    ids = torch.cat([prompt_ids, sampled.tokens], 1)
    attention = torch.cat([prompt_mask, mask.long()], 1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention, position_ids=positions).logits.float()
    logits = logits[:, prompt_ids.shape[1] - 1:-1] / temperature
    return torch.log_softmax(logits, -1).gather(2, sampled.tokens[..., None]).squeeze(2) * mask, mask


def test_vllm_samples_agree_in_distribution_with_the_built_in_sampler(rollouts):
    engine, policy, tokenizer = rollouts
    n, temperature = 128, 1.0
    ours = engine.sample(PROMPTS, n, 12, temperature, seed=1)
    inputs = left_pad(tokenizer, PROMPTS)
    theirs = sample(policy.eval(), **inputs, max_new_tokens=12, eos_ids=[0, 1], pad_id=1, temperature=temperature,
                    generator=torch.Generator().manual_seed(1), num_samples=n)
    # vLLM's log-probs are the behaviour policy's: the trainer's forward gives the same numbers in float32.
    scored, mask = trainer_logprobs(policy, tokenizer, PROMPTS, ours, n, temperature)
    _, mismatch = truncated_importance_weights(scored, ours.logprobs, mask)
    assert mismatch["rollout/is_mismatch_max"] < 1e-3
    theirs_scored, theirs_mask = trainer_logprobs(policy, tokenizer, PROMPTS, theirs, n, temperature)
    for half in (slice(0, n), slice(n, 2 * n)):  # per prompt
        # Mean log-prob of a sampled completion: equal within 4 standard errors.
        a, b = scored[half].sum(1), theirs_scored[half].sum(1)
        error = (a.var() / n + b.var() / n).sqrt()
        assert abs(a.mean() - b.mean()) < 4 * error + 1e-6, (a.mean(), b.mean(), error)
        # First tokens: total variation distance between the two samples' frequencies.
        counts = torch.stack([torch.bincount(x.tokens[half, 0], minlength=len(tokenizer)).float() / n
                              for x in (ours, theirs)])
        assert 0.5 * (counts[0] - counts[1]).abs().sum() < 0.15
        assert abs(ours.lengths[half].float().mean() - theirs.lengths[half].float().mean()) < 1.5


def test_after_a_weight_sync_vllm_greedy_outputs_equal_the_updated_trainers(rollouts):
    engine, policy, tokenizer = rollouts
    updated = copy.deepcopy(policy)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in updated.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    inputs = left_pad(tokenizer, PROMPTS)
    expected = sample(updated.eval(), **inputs, max_new_tokens=24, eos_ids=[0, 1], pad_id=1)
    before = engine.sample(PROMPTS, 1, 24, 0.0, seed=0)
    engine.sync(updated)
    after = engine.sample(PROMPTS, 1, 24, 0.0, seed=0)

    def rows(s):
        return [s.tokens[i, :int(s.lengths[i])].tolist() for i in range(len(PROMPTS))]

    assert rows(after) == rows(expected) and rows(before) != rows(expected)
    # Log-probs too (a stale copy of the tied LM head would show here first).
    assert torch.allclose(after.logprobs, expected.logprobs[:, :after.logprobs.shape[1]], atol=1e-3)
    engine.sync(policy)
    assert rows(engine.sample(PROMPTS, 1, 24, 0.0, seed=0)) == rows(before)


def test_a_lora_policy_is_synced_merged_into_an_engine_without_lora(rollouts):
    """``vllm.lora=merged`` (the CPU default): the engine serves the base model's weights, and a LoRA policy is
    synced with its adapter folded in; vLLM then samples what the PEFT model samples."""
    from peft import LoraConfig, get_peft_model

    engine, policy, tokenizer = rollouts
    torch.manual_seed(0)
    lora = get_peft_model(copy.deepcopy(policy), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    inputs = left_pad(tokenizer, PROMPTS)
    expected = sample(lora.eval(), **inputs, max_new_tokens=24, eos_ids=[0, 1], pad_id=1)
    before = engine.sample(PROMPTS, 1, 24, 0.0, seed=0)
    engine.sync(lora)
    after = engine.sample(PROMPTS, 1, 24, 0.0, seed=0)
    rows = lambda s: [s.tokens[i, :int(s.lengths[i])].tolist() for i in range(len(PROMPTS))]  # noqa: E731
    assert rows(after) == rows(expected) and rows(before) != rows(expected)
    assert torch.allclose(after.logprobs, expected.logprobs[:, :after.logprobs.shape[1]], atol=1e-3)
    engine.sync(policy)
    assert rows(engine.sample(PROMPTS, 1, 24, 0.0, seed=0)) == rows(before)


def test_rl_steps_with_vllm_rollouts_sync_the_engine_and_train_the_policy(rollouts, cfg_factory):
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from cmt.data.prompts import render_prompt
    from cmt.data.synthetic import generate
    from cmt.modules.rl import RLModule
    from cmt.rl.config import validate_rl_config

    engine, policy, tokenizer = rollouts
    model = copy.deepcopy(policy).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    cfg = cfg_factory(["rl=grpo", "rl.rollout=vllm", "rl.prompts_per_step=2", "rl.group_size=4",
                       "rl.mini_batch_size=4", "rl.micro_batch_size=4", "rl.steps=3", "rl.max_new_tokens=16",
                       "rl.kl_coef=0"])
    reward = validate_rl_config(cfg.rl, cfg.reward)
    module = RLModule(model, tokenizer, generate("train", 6, seed=0), [],
                      lambda q: render_prompt(q, "Question: {question}\nAnswer:"), cfg.rl, reward,
                      lambda params: torch.optim.AdamW(params, lr=1e-3), rollout_engine=engine)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu", precision="32-true")
    trainer.fit(module, DataLoader([0, 1, 2, 3, 4, 5], batch_size=2, collate_fn=list))
    assert len(module.history) == 3
    assert all(not torch.equal(before[name], p) for name, p in model.named_parameters())
    # Each step samples from the policy's weights of that step: the engine's log-probs are the trainer's.
    for metrics in module.history:
        assert metrics["rollout/is_mismatch_max"] < 1e-3, metrics
        assert abs(metrics["rollout/is_weight_mean"] - 1.0) < 1e-3


def test_ccrl_stage_with_vllm_rollouts_runs_from_the_cli_and_logs_the_mismatch(tmp_path):
    import csv
    import math
    import subprocess
    import sys

    from tests.conftest import FAST, ROOT
    from tests.vllm_suite.conftest import ENGINE_OVERRIDES, vllm_environment

    args = [sys.executable, "run.py", "stage=pipeline", "stage.steps=[teach,comt_sft,ccrl]", "rl=grpo",
            "rl.rollout=vllm", "rl.prompts_per_step=2", "rl.group_size=4", "rl.mini_batch_size=8",
            "rl.micro_batch_size=4", *[o for o in FAST if not o.startswith("logger=")], "logger=csv",
            *ENGINE_OVERRIDES, f"paths.artifacts={tmp_path}/artifacts", f"paths.results={tmp_path}/results",
            f"hydra.run.dir={tmp_path}/job"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900, env=vllm_environment(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "comt_ccrl: 2 RL steps" in out.stdout
    rows = [row for path in (tmp_path / "job").rglob("metrics.csv") for row in csv.DictReader(path.open())
            if row.get("rollout/is_mismatch_max")]
    assert len(rows) == 2
    assert all(math.isfinite(float(r["rollout/is_mismatch_mean"])) and float(r["rollout/is_weight_mean"]) > 0
               for r in rows)
    assert not (tmp_path / "job" / "vllm-sync").exists()  # the engine's scratch weights are removed

