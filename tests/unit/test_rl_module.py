"""Two RL steps on the real tiny model: the policy moves, the reference and old log-probs do not."""

import copy
import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from cmt.data.prompts import render_prompt
from cmt.data.synthetic import generate
from cmt.modules.rl import Critic, RLModule, completion_slice
from cmt.rl.config import validate_rl_config


@pytest.fixture
def rl_config(cfg_factory):
    """``make(algorithm, **overrides) -> (rl, reward)``: a composed rl preset shrunk to 2 x 2 rollouts."""
    def make(name: str, **overrides):
        sizes = {"prompts_per_step": 2, "group_size": 2, "mini_batch_size": 2, "micro_batch_size": 1, "steps": 2,
                 "max_new_tokens": 16, **overrides}
        cfg = cfg_factory([f"rl={name}", *(f"rl.{key}={value}" for key, value in sizes.items())])
        return cfg.rl, cfg.reward
    return make


def _train(model, tokenizer, rl, reward_cfg, reference=None, critic=None, accelerator="cpu", precision="32-true",
           logits_chunk_tokens=None):
    reward = validate_rl_config(rl, reward_cfg)
    problems = generate("train", 8, seed=0)
    module = RLModule(model, tokenizer, problems, [], lambda q: render_prompt(q, "Question: {question}\nAnswer:"),
                      rl, reward, lambda params: torch.optim.AdamW(params, lr=1e-3), reference=reference,
                      critic=critic, critic_optimizer=(lambda params: torch.optim.AdamW(params, lr=1e-3)),
                      val_batch_size=4, logits_chunk_tokens=logits_chunk_tokens)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator=accelerator, precision=precision)
    trainer.fit(module, DataLoader([0, 1, 2, 3], batch_size=2, collate_fn=list))
    return module


@pytest.mark.parametrize("algorithm,logits_chunk_tokens", [("grpo", None), ("ppo", None), ("grpo", 5)])
def test_two_steps_change_the_policy_and_leave_the_reference_frozen(tiny, rl_config, algorithm, logits_chunk_tokens):
    model, tokenizer = tiny
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    reference_before = {name: p.detach().clone() for name, p in reference.named_parameters()}
    critic = Critic(copy.deepcopy(model).model, model.config.hidden_size).train() if algorithm == "ppo" else None
    model.train()
    module = _train(model, tokenizer, *rl_config(algorithm, kl_coef=0.05), reference=reference, critic=critic,
                    logits_chunk_tokens=logits_chunk_tokens)
    assert len(module.history) == 2
    moved = [name for name, p in model.named_parameters() if not torch.equal(before[name], p)]
    assert len(moved) == len(before)
    assert all(torch.equal(reference_before[name], p) for name, p in reference.named_parameters())
    for metrics in module.history:
        assert {"reward/total", "reward/outcome", "reward/calibration", "train/kl", "train/entropy",
                "train/clip_fraction", "timing/generate", "timing/score", "timing/update"} <= set(metrics)
        assert 0.0 <= metrics["train/truncation_rate"] <= 1.0
    if algorithm == "ppo":
        assert "train/value_loss" in module.history[-1]


def test_a_chunked_lm_head_gives_the_same_scores_losses_and_gradients(tiny, rl_config):
    """The policy's and the reference's log-probs through the LM head 3 tokens at a time (`cmt.lm_head`):
    the KL penalty's reference log-probs, the loss, its statistics and the gradients of the full logits."""
    model, tokenizer = tiny
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    rl, reward_cfg = rl_config("grpo", kl_coef=0.05, group_size=4)
    reward = validate_rl_config(rl, reward_cfg)
    problems = generate("train", 2, seed=3)
    results = []
    for chunk in (None, 3):
        module = RLModule(model, tokenizer, problems, [], lambda q: render_prompt(q, "Question: {question}\nAnswer:"),
                          rl, reward, lambda params: torch.optim.AdamW(params, lr=1e-3), reference=reference,
                          logits_chunk_tokens=chunk)
        module.generator.manual_seed(0)
        model.train()
        batch, _ = module._score(problems)
        # Advantages that are not all 0: the untrained model's rollouts are cut without an answer and score
        # alike (no answer counts as a confident wrong one), which would leave only the KL term's gradient.
        batch.fields["advantages"] = torch.linspace(-1, 1, batch.tokens.numel()).reshape(batch.tokens.shape)
        rows = batch.rows(torch.arange(batch.tokens.shape[0]))
        model.zero_grad(set_to_none=True)
        loss, stats = module._loss(rows, float(batch.mask.sum()), batch.tokens.shape[0])
        loss.backward()
        results.append((batch.tokens, batch.fields["ref_logprobs"] * batch.mask, loss.detach(), stats,
                        torch.cat([p.grad.flatten() for p in model.parameters()])))
    (tokens, ref, loss, stats, grad), (chunked_tokens, chunked_ref, chunked_loss, chunked_stats, chunked_grad) = results
    assert torch.equal(tokens, chunked_tokens) and int(tokens.ne(tokenizer.pad_token_id).sum()) > 3
    torch.testing.assert_close(chunked_ref, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked_loss, loss, atol=1e-6, rtol=1e-5)
    assert stats.keys() == chunked_stats.keys()
    for name in stats:
        assert math.isclose(chunked_stats[name], stats[name], rel_tol=1e-4, abs_tol=1e-6), name
    assert float((chunked_grad - grad).norm() / grad.norm()) < 1e-4


def test_the_separate_reference_follows_the_policys_precision(tiny, rl_config):
    """Kept out of the module tree, the reference is not converted by Lightning; the module converts it."""
    model, tokenizer = tiny
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    model.train()
    module = _train(model, tokenizer, *rl_config("grpo", kl_coef=0.05), reference=reference, precision="bf16-true")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in reference.parameters()} == {torch.bfloat16}
    assert all(math.isfinite(metrics["train/kl"]) for metrics in module.history)


def test_the_critics_values_keep_float32_precision_under_bf16_autocast(tiny):
    """bf16-mixed runs the trunk's matrix products in bf16; the value head runs in its float32 weights (bf16's
    steps of 0.004-0.008 near 1 would blur the differences between neighbouring values that GAE takes)."""
    model, _ = tiny
    critic = Critic(model.model, model.config.hidden_size).eval()
    torch.nn.init.normal_(critic.head.weight, std=0.2)
    torch.nn.init.constant_(critic.head.bias, 0.9)
    ids = torch.randint(2, 500, (2, 12), generator=torch.Generator().manual_seed(0))
    mask, positions = torch.ones_like(ids), torch.arange(12).expand(2, 12)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        values = critic(ids, mask, positions)
        hidden = critic.trunk(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
    expected = hidden.float() @ critic.head.weight[0] + critic.head.bias
    assert values.dtype == torch.float32
    torch.testing.assert_close(values, expected, atol=1e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("algorithm", "kl_mode"), [("grpo", "loss"), ("ppo", "reward")])
def test_rl_steps_run_on_a_gpu(tiny, rl_config, algorithm, kl_mode):
    """Rollouts drawn on the GPU from the module's CPU generator, rewards moved to the policy's device, and the
    separate reference moved there too."""
    model, tokenizer = tiny
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    critic = Critic(copy.deepcopy(model).model, model.config.hidden_size).train() if algorithm == "ppo" else None
    model.train()
    module = _train(model, tokenizer, *rl_config(algorithm, kl_coef=0.05, kl_mode=kl_mode), reference=reference,
                    critic=critic, accelerator="gpu")
    assert len(module.history) == 2
    assert next(reference.parameters()).device.type == "cuda"


def test_sampled_logprobs_are_the_policys_own_so_the_first_ratio_is_one(tiny, rl_config):
    model, tokenizer = tiny
    rl, reward_cfg = rl_config("grpo", kl_coef=0.0)
    reward = validate_rl_config(rl, reward_cfg)
    module = RLModule(model, tokenizer, generate("train", 4, seed=1), [],
                      lambda q: render_prompt(q, "Question: {question}\nAnswer:"), rl, reward,
                      lambda params: torch.optim.AdamW(params, lr=1e-3))
    batch, _ = module._score(module.problems[:2])
    rows = batch.rows(torch.arange(batch.tokens.shape[0]))
    with torch.no_grad():
        recomputed, _ = module._forward(model, rows)
    mask = rows["mask"].bool()
    torch.testing.assert_close(recomputed[mask], rows["old_logprobs"][mask], atol=2e-4, rtol=0)


def test_a_micro_batch_cut_to_its_rows_width_gives_the_full_width_results(tiny, rl_config):
    """Rollouts grouped into cheap chunks and cut to the columns they use: narrower tensors, the same
    log-probs and critic values as on the whole batch's width."""
    model, tokenizer = tiny
    rl, reward_cfg = rl_config("grpo", kl_coef=0.0, prompts_per_step=4, group_size=4, max_new_tokens=24)
    reward = validate_rl_config(rl, reward_cfg)
    problems = generate("train", 4, seed=3)
    module = RLModule(model, tokenizer, problems, [], lambda q: render_prompt(q, "Question: {question}\nAnswer:"),
                      rl, reward, lambda params: torch.optim.AdamW(params, lr=1e-3))
    batch, _ = module._score(problems)
    lengths = batch.prompt_lengths + batch.lengths
    assert len(set(lengths.tolist())) > 1, "rollouts of one length cannot show the cut"
    chunks = batch.chunks(range(len(lengths)), 4)
    assert sorted(torch.cat(chunks).tolist()) == list(range(len(lengths)))
    # No cheaper than either order it chooses from: by total length, or prompt by prompt.
    by_length = torch.argsort(lengths, stable=True).split(4)
    by_prompt = torch.arange(len(lengths)).split(4)
    cost = sum(batch._tokens(c) for c in chunks)
    assert cost <= min(sum(batch._tokens(c) for c in by_length), sum(batch._tokens(c) for c in by_prompt))
    critic = Critic(model.model, model.config.hidden_size).eval()
    torch.nn.init.normal_(critic.head.weight)
    everything = batch.rows(torch.arange(len(lengths)))
    with torch.no_grad():
        full, _ = module._forward(model, everything)
        full_values = completion_slice(critic(everything["input_ids"], everything["attention_mask"],
                                              everything["position_ids"]), everything)
        narrower = 0
        for index in chunks:
            rows = batch.rows(index)
            narrower += rows["input_ids"].shape[1] < everything["input_ids"].shape[1]
            cut, _ = module._forward(model, rows)
            values = completion_slice(critic(rows["input_ids"], rows["attention_mask"], rows["position_ids"]), rows)
            mask = rows["mask"].bool()
            width = mask.shape[1]
            torch.testing.assert_close(cut[mask], full[index, :width][mask], atol=1e-4, rtol=0)
            torch.testing.assert_close(values[mask], full_values[index, :width][mask], atol=1e-4, rtol=0)
            assert not batch.mask[index, width:].any()
    assert narrower > 0


def test_lora_policy_with_checkpointing_trains_and_its_reference_is_the_base_model_in_eval_mode(tiny, rl_config):
    """LoRA without a separate reference: the reference is the policy with adapters off, run in eval mode
    (so activation checkpointing does not force whole rows), and it gives the base model's log-probs."""
    from cmt.lm_head import token_logprobs
    from cmt.models import enable_activation_checkpointing, wrap_lora
    from cmt.rl.forward import _full_rows, _logits

    model, tokenizer = tiny
    base = copy.deepcopy(model).eval()
    enable_activation_checkpointing(model)
    policy = wrap_lora(model, {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": "all-linear"})
    # Non-zero adapters, so that "adapters off" is not the same as "adapters on".
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    policy.train()
    rl, reward_cfg = rl_config("grpo", kl_coef=0.05)
    reward = validate_rl_config(rl, reward_cfg)
    module = RLModule(policy, tokenizer, generate("train", 4, seed=2), [],
                      lambda q: render_prompt(q, "Question: {question}\nAnswer:"), rl, reward,
                      lambda params: torch.optim.AdamW(params, lr=1e-3))
    modes = []
    hook = policy.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    batch, _ = module._score(module.problems[:2])
    hook.remove()
    # Sampling and the reference pass ran in eval mode; the policy is back in training mode.
    assert modes and not any(modes)
    assert policy.training
    rows = batch.rows(torch.arange(batch.tokens.shape[0]))
    mask = rows["mask"].bool()
    with torch.no_grad():
        expected = token_logprobs(_full_rows(_logits(base), rows), rows["tokens"])
    torch.testing.assert_close(batch.fields["ref_logprobs"][:, :mask.shape[1]][mask], expected[mask], atol=1e-4,
                               rtol=0)
    frozen = {name: p.detach().clone() for name, p in policy.named_parameters() if not p.requires_grad}
    trained = {name: p.detach().clone() for name, p in policy.named_parameters() if p.requires_grad}
    _train(policy, tokenizer, rl, reward_cfg)
    assert all(torch.equal(frozen[name], p) for name, p in policy.named_parameters() if name in frozen)
    assert any(not torch.equal(trained[name], p) for name, p in policy.named_parameters() if name in trained)
