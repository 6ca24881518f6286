"""Two RL steps on the real tiny model: the policy moves, the reference and old log-probs do not."""

import copy
import dataclasses
import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from cmt.data.prompts import render_prompt
from cmt.data.synthetic import generate
from cmt.modules.rl import RLModule
from cmt.rl.batch import completion_slice
from cmt.rl.config import validate_rl_config
from cmt.rl.critic import Critic
from cmt.rl.forward import completion_logprobs
from cmt.rl.reference import reference_model


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
           logits_chunk_tokens=None, reference_adapter=None):
    reward = validate_rl_config(rl, reward_cfg)
    problems = generate("train", 8, seed=0)
    module = RLModule(model, tokenizer, problems, [], lambda q: render_prompt(q, "Question: {question}\nAnswer:"),
                      rl, reward, lambda params: torch.optim.AdamW(params, lr=1e-3), reference=reference,
                      critic=critic, critic_optimizer=(lambda params: torch.optim.AdamW(params, lr=1e-3)),
                      val_batch_size=4, logits_chunk_tokens=logits_chunk_tokens, reference_adapter=reference_adapter)
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
        batch, _ = module.score(problems)
        # Advantages that are not all 0: the untrained model's rollouts are cut without an answer and score
        # alike (no answer counts as a confident wrong one), which would leave only the KL term's gradient.
        batch.fields["advantages"] = torch.linspace(-1, 1, batch.tokens.numel()).reshape(batch.tokens.shape)
        rows = batch.rows(torch.arange(batch.tokens.shape[0]))
        model.zero_grad(set_to_none=True)
        loss, stats = module.loss(rows, float(batch.mask.sum()), batch.tokens.shape[0])
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
@pytest.mark.parametrize(("algorithm", "kl_mode"), [("grpo", "loss"), ("ppo", "reward"), ("dapo", "loss")])
def test_rl_steps_run_on_a_gpu(tiny, rl_config, algorithm, kl_mode):
    """Rollouts drawn on the GPU from the module's CPU generator, rewards (and the outcomes the advantage scale
    reads) moved to the policy's device, the separate reference moved there too, and DAPO's refill rounds
    gathered there."""
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
    batch, _ = module.score(module.problems[:2])
    rows = batch.rows(torch.arange(batch.tokens.shape[0]))
    with torch.no_grad():
        recomputed, _ = completion_logprobs(model, rows, module.rl.temperature, module.logits_chunk_tokens)
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
    batch, _ = module.score(problems)
    lengths = batch.prompt_lengths + batch.lengths
    assert len(set(lengths.tolist())) > 1, "rollouts of one length cannot show the cut"
    chunks = batch.chunks(range(len(lengths)), 4)
    assert sorted(torch.cat(chunks).tolist()) == list(range(len(lengths)))
    # No cheaper than either order it chooses from: by total length, or prompt by prompt.
    by_length = torch.argsort(lengths, stable=True).split(4)
    by_prompt = torch.arange(len(lengths)).split(4)

    def tokens(chunk):
        """What a forward pass over ``chunk`` processes: its distinct prompts once each, and each row's completion,
        as `Batch.rows` cuts them."""
        rows = batch.rows(chunk)
        return rows["prompt_ids"].numel() + rows["tokens"].numel()

    cost = sum(tokens(c) for c in chunks)
    assert cost <= min(sum(tokens(c) for c in by_length), sum(tokens(c) for c in by_prompt))
    critic = Critic(model.model, model.config.hidden_size).eval()
    torch.nn.init.normal_(critic.head.weight)
    everything = batch.rows(torch.arange(len(lengths)))
    with torch.no_grad():
        full, _ = completion_logprobs(model, everything, module.rl.temperature, module.logits_chunk_tokens)
        full_values = completion_slice(critic(everything["input_ids"], everything["attention_mask"],
                                              everything["position_ids"]), everything)
        narrower = 0
        for index in chunks:
            rows = batch.rows(index)
            narrower += rows["input_ids"].shape[1] < everything["input_ids"].shape[1]
            cut, _ = completion_logprobs(model, rows, module.rl.temperature, module.logits_chunk_tokens)
            values = completion_slice(critic(rows["input_ids"], rows["attention_mask"], rows["position_ids"]), rows)
            mask = rows["mask"].bool()
            width = mask.shape[1]
            torch.testing.assert_close(cut[mask], full[index, :width][mask], atol=1e-4, rtol=0)
            torch.testing.assert_close(values[mask], full_values[index, :width][mask], atol=1e-4, rtol=0)
            assert not batch.mask[index, width:].any()
    assert narrower > 0


def _lora_cfg(dropout: float) -> dict:
    return {"source": "bundled:tiny", "path": None, "dtype": "float32", "activation_checkpointing": True,
            "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": dropout, "target_modules": "all-linear"}}


def _full_row_logprobs(model, rows):
    """Log-probs of the completion tokens from one plain pass over every row's ``[prompt | completion]``."""
    from cmt.lm_head import token_logprobs

    width = rows["tokens"].shape[1]
    with torch.no_grad():
        logits = model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"],
                       position_ids=rows["position_ids"]).logits
        return token_logprobs(logits[:, -width - 1:-1], rows["tokens"])


def test_a_lora_policys_reference_is_the_frozen_sft_adapter(tiny, rl_config, tmp_path):
    """LoRA RL keeps training the SFT adapter; the KL reference is that adapter as it was when RL started (loaded
    a second time, frozen), run in eval mode: its log-probs are the SFT checkpoint's, not the base model's, and
    they stay the same after policy updates. Activating it for reference passes leaves which parameters train
    as it was (PEFT's set_adapter would otherwise flip them)."""
    from cmt.models import load_model, save_model, wrap_lora
    from cmt.stages.rl import build_reference

    model, tokenizer = tiny
    base = copy.deepcopy(model).eval()
    sft = wrap_lora(model, _lora_cfg(0.05)["lora"])
    for name, p in sft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    save_model(sft, tokenizer, tmp_path / "sft")
    sft_model = load_model(_lora_cfg(0.05), tmp_path / "sft")[0].eval()
    policy = load_model(_lora_cfg(0.05), tmp_path / "sft")[0]
    reference, adapter = build_reference(policy, tmp_path / "sft", kl_coef=0.05)
    assert reference is None and adapter is not None
    trainable = {name for name, p in policy.named_parameters() if p.requires_grad}
    assert trainable and not any(adapter in name for name in trainable)
    policy.train()
    rl, reward_cfg = rl_config("grpo", kl_coef=0.05)
    module = RLModule(policy, tokenizer, generate("train", 4, seed=2), [],
                      lambda q: render_prompt(q, "Question: {question}\nAnswer:"), rl,
                      validate_rl_config(rl, reward_cfg), lambda params: torch.optim.AdamW(params, lr=1e-3),
                      reference_adapter=adapter)
    modes = []
    hook = policy.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    batch, _ = module.score(module.problems[:2])
    hook.remove()
    # Sampling and the reference pass ran in eval mode (no checkpointing, no dropout); the policy trains again.
    assert modes and not any(modes) and policy.training
    assert {name for name, p in policy.named_parameters() if p.requires_grad} == trainable
    rows = batch.rows(torch.arange(batch.tokens.shape[0]))
    mask = rows["mask"].bool()
    ref = batch.fields["ref_logprobs"][:, :mask.shape[1]][mask]
    torch.testing.assert_close(ref, _full_row_logprobs(sft_model, rows)[mask], atol=1e-4, rtol=0)
    assert float((ref - _full_row_logprobs(base, rows)[mask]).abs().max()) > 1e-2
    frozen = {name: p.detach().clone() for name, p in policy.named_parameters() if name not in trainable}
    trained = {name: p.detach().clone() for name, p in policy.named_parameters() if name in trainable}
    _train(policy, tokenizer, rl, reward_cfg, reference_adapter=adapter)
    assert all(torch.equal(frozen[name], p) for name, p in policy.named_parameters() if name in frozen)
    assert any(not torch.equal(trained[name], p) for name, p in policy.named_parameters() if name in trained)
    with reference_model(policy, adapter=adapter) as reference:
        after = _full_row_logprobs(reference, rows)[mask]
    torch.testing.assert_close(after, ref, atol=1e-4, rtol=0)
    with torch.no_grad():
        policy.eval()
        assert float((_full_row_logprobs(policy, rows)[mask] - ref).abs().max()) > 1e-3


def test_rl_trains_without_dropout_so_the_first_ratio_is_one(tiny, rl_config):
    """LoRA dropout 0.05 and attention dropout are turned off: the update's training-mode forward gives the
    sampler's log-probs, the same at every call, and the first update clips nothing."""
    from cmt.models import wrap_lora

    model, tokenizer = tiny
    for module in model.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.1
    policy = wrap_lora(model, _lora_cfg(0.05)["lora"])
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    policy.train()
    rl, reward_cfg = rl_config("grpo", kl_coef=0.0)
    module = RLModule(policy, tokenizer, generate("train", 4, seed=1), [],
                      lambda q: render_prompt(q, "Question: {question}\nAnswer:"), rl,
                      validate_rl_config(rl, reward_cfg), lambda params: torch.optim.AdamW(params, lr=1e-3))
    batch, _ = module.score(module.problems[:2])
    assert policy.training
    rows = batch.rows(torch.arange(batch.tokens.shape[0]))
    mask = rows["mask"].bool()
    with torch.no_grad():
        first, _ = completion_logprobs(policy, rows, module.rl.temperature, module.logits_chunk_tokens)
        second, _ = completion_logprobs(policy, rows, module.rl.temperature, module.logits_chunk_tokens)
    assert torch.equal(first[mask], second[mask])
    torch.testing.assert_close(first[mask], rows["old_logprobs"][mask], atol=2e-4, rtol=0)
    _, stats = module.loss(rows, float(rows["mask"].sum()), rows["tokens"].shape[0])
    assert stats["train/clip_fraction"] == 0.0


def test_the_kl_loss_follows_loss_aggregation(tiny, rl_config):
    """With ``kl_mode: loss`` the KL term is aggregated like the policy loss (GRPO: a mean over sequences of each
    sequence's token mean), not always a token mean: rollouts of different lengths tell the two apart."""
    from cmt.rl.losses import aggregate, kl_penalty

    # RLModule seeds its rollout generator from torch.initial_seed(): without this line the rollouts, and so
    # whether their lengths tell the two aggregations apart, depend on which test seeded torch before.
    torch.manual_seed(0)
    model, tokenizer = tiny
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.02)
    rl, reward_cfg = rl_config("grpo", kl_coef=0.5, kl_mode="loss", group_size=4, max_new_tokens=48)
    assert rl.loss_aggregation == "sequence_mean"
    module = RLModule(model, tokenizer, generate("train", 2, seed=3), [],
                      lambda q: render_prompt(q, "Question: {question}\nAnswer:"), rl,
                      validate_rl_config(rl, reward_cfg), lambda params: torch.optim.AdamW(params, lr=1e-3),
                      reference=reference)
    batch, _ = module.score(module.problems)
    rows = batch.rows(torch.arange(batch.tokens.shape[0]))
    assert len(set(batch.lengths.tolist())) > 1
    tokens, sequences = float(rows["mask"].sum()), rows["tokens"].shape[0]
    with torch.no_grad():
        with_kl, _ = module.loss(rows, tokens, sequences)
        module.rl = dataclasses.replace(module.rl, kl_coef=0.0)
        without, _ = module.loss(rows, tokens, sequences)
        logprobs, _ = completion_logprobs(model, rows, module.rl.temperature, module.logits_chunk_tokens)
    kl = kl_penalty(logprobs, rows["ref_logprobs"], "k3")
    expected = 0.5 * aggregate(kl, rows["mask"], "sequence_mean")
    assert abs(float(expected - 0.5 * aggregate(kl, rows["mask"], "token_mean"))) > 1e-4
    torch.testing.assert_close(with_kl - without, expected, atol=1e-6, rtol=1e-4)


class _SameRollouts(pl.Callback):
    """Reseed the rollout sampler before every step and record whether the policy and the critic have moved."""

    def __init__(self, policy, critic):
        self.policy, self.critic = policy, critic
        self.start = [{n: p.detach().clone() for n, p in m.named_parameters()} for m in (policy, critic)]
        self.moved: list[tuple[bool, bool]] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        module.generator.manual_seed(0)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.moved.append(tuple(any(not torch.equal(start[n], p) for n, p in m.named_parameters())
                                for m, start in zip((self.policy, self.critic), self.start, strict=True)))


def test_critic_warmup_trains_only_the_critic_and_explained_variance_rises(tiny, rl_config):
    """PPO's first ``rl.critic.warmup_steps`` RL steps update the critic alone; on a fixed toy task (the same
    rollouts every step) the logged explained variance of the returns by the critic's values starts at 0 (the
    zero-initialised head) and rises as it learns. The policy's learning rate then warms up linearly."""
    model, tokenizer = tiny
    critic = Critic(copy.deepcopy(model).model, model.config.hidden_size).train()
    model.train()
    rl, reward_cfg = rl_config("ppo", kl_coef=0.0, steps=8, warmup_steps=1, mini_batch_size=4, micro_batch_size=4,
                               **{"critic.warmup_steps": 6})
    module = RLModule(model, tokenizer, generate("train", 2, seed=0), [],
                      lambda q: render_prompt(q, "Question: {question}\nAnswer:"), rl,
                      validate_rl_config(rl, reward_cfg), lambda params: torch.optim.AdamW(params, lr=1e-3),
                      critic=critic, critic_optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3))
    record = _SameRollouts(model, critic)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu", callbacks=[record])
    trainer.fit(module, DataLoader([[0, 1]] * 8, batch_size=None))
    assert record.moved == [(False, True)] * 6 + [(True, True)] * 2
    assert [h["train/lr"] for h in module.history] == [0.0] * 6 + [5e-4, 1e-3]
    variance = [h["train/explained_variance"] for h in module.history]
    assert abs(variance[0]) < 1e-6
    # Single updates may overshoot; over the warm-up the critic comes to explain a large share of the returns.
    assert variance[5] > max(variance[1], 0.3)


def test_zero_variance_groups_counts_groups_whose_outcomes_agree(tiny, rl_config):
    """Under CCRL's continuous reward the rewards of a group almost never tie; the metric counts the groups whose
    answers are all right or all wrong, read from the reward's outcome term."""
    from cmt.rewards.combine import compute_rewards

    model, tokenizer = tiny
    rl, reward_cfg = rl_config("grpo", kl_coef=0.0, prompts_per_step=4, group_size=4, max_new_tokens=48)
    reward = validate_rl_config(rl, reward_cfg)
    module = RLModule(model, tokenizer, generate("train", 4, seed=5), [],
                      lambda q: render_prompt(q, "Question: {question}\nAnswer:"), rl, reward,
                      lambda params: torch.optim.AdamW(params, lr=1e-3))
    module.generator.manual_seed(0)
    rollouts, _, _ = module.sampler.rollouts(module.problems)
    rewards = compute_rewards(rollouts, module.problems, reward)
    outcomes = torch.tensor(rewards.terms["outcome"]).view(4, 4)
    totals = rewards.scores().view(4, 4)
    agree = (outcomes.max(1).values == outcomes.min(1).values).float().mean()
    tied = (totals.max(1).values == totals.min(1).values).float().mean()
    assert agree > tied, "the sample must have a group whose outcomes agree but whose rewards differ"
    module.generator.manual_seed(0)
    _, metrics = module.score(module.problems)
    assert metrics["train/zero_variance_groups"] == pytest.approx(float(agree))


def _spreads(module, seed, n=4):
    """The reward spread (max - min) of each group the module samples for its first ``n`` problems from ``seed``."""
    from cmt.rewards.combine import compute_rewards

    group = module.rl.group_size
    module.generator.manual_seed(seed)
    rollouts, _, _ = module.sampler.rollouts(module.problems[:n])
    groups = compute_rewards(rollouts, module.problems[:n], module.reward).scores().view(-1, group)
    return sorted((groups.max(1).values - groups.min(1).values).tolist(), reverse=True)


def _dapo(tiny, rl_config, **overrides):
    model, tokenizer = tiny
    rl, reward_cfg = rl_config("dapo", prompts_per_step=4, group_size=2, mini_batch_size=4, micro_batch_size=2,
                               max_new_tokens=32, **overrides)
    steps = []

    def optimizer(params):
        adamw = torch.optim.AdamW(params, lr=1e-3)
        adamw.register_step_post_hook(lambda *args: steps.append(1))
        return adamw

    module = RLModule(model, tokenizer, generate("train", 16, seed=0), [],
                      lambda q: render_prompt(q, "Question: {question}\nAnswer:"), rl,
                      validate_rl_config(rl, reward_cfg), optimizer)
    return module, steps


def _set_tolerance(module, tolerance):
    """Set ``rl.dynamic_sampling.tolerance`` on a built module (its settings are frozen)."""
    module.rl = dataclasses.replace(module.rl, dynamic_sampling=dataclasses.replace(
        module.rl.dynamic_sampling, tolerance=tolerance))


def test_dynamic_sampling_refills_the_batch_with_varied_groups(tiny, rl_config):
    """A first round with one varied group (of 4) is topped up by more sampling rounds to 4 varied groups."""
    module, _ = _dapo(tiny, rl_config, **{"dynamic_sampling.max_rounds": 12})
    spreads = _spreads(module, seed=0)
    _set_tolerance(module, (spreads[0] + spreads[1]) / 2)
    module.generator.manual_seed(0)
    batch, metrics = module.score(module.problems[:4])
    assert metrics["train/sampling_rounds"] > 1 and metrics["train/kept_groups"] == 4.0
    assert batch.tokens.shape[0] == 8 and bool(batch.fields["keep"].all())
    # Every trained group varies by more than the tolerance: its two rollouts' advantages are +-spread/2 (the
    # outcomes agree, so the outcome scale divides by 1).
    advantages = batch.fields["advantages"][:, 0].view(4, 2)
    assert bool((advantages[:, 0] - advantages[:, 1]).abs().gt(module.rl.dynamic_sampling.tolerance).all())
    # The prompt and completion of each kept rollout line up: the sampler's log-probs are the policy's own.
    rows = batch.rows(torch.arange(8))
    with torch.no_grad():
        recomputed, _ = completion_logprobs(module.policy, rows, module.rl.temperature, module.logits_chunk_tokens)
    mask = rows["mask"].bool()
    torch.testing.assert_close(recomputed[mask], rows["old_logprobs"][mask], atol=2e-4, rtol=0)


def test_a_ragged_remainder_of_kept_rollouts_gets_no_optimizer_step(tiny, rl_config):
    """Without refill rounds, 3 varied groups of 2 = 6 rollouts fill one mini-batch of 4; the other 2 are left out
    instead of getting a full optimizer step of their own."""
    module, steps = _dapo(tiny, rl_config, **{"dynamic_sampling.max_rounds": 1})
    spreads = _spreads(module, seed=0)
    _set_tolerance(module, (spreads[2] + spreads[3]) / 2)

    class Reseed(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            pl_module.generator.manual_seed(0)

    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu", callbacks=[Reseed()])
    trainer.fit(module, DataLoader([[0, 1, 2, 3]], batch_size=None))
    [metrics] = module.history
    assert metrics["train/kept_groups"] == 3.0 and metrics["train/updated_rollouts"] == 4.0
    assert len(steps) == 1


def test_a_step_judges_each_rollout_once_and_logs_the_rewards_judgment(tiny, rl_config, monkeypatch):
    """The reward judges every rollout's steps; the logged accuracy and step calibration are read from that
    judgment (cmt.rl.metrics), not from a second pass over the rollouts."""
    import cmt.modules.rl as rl_module
    import cmt.rewards.calibration as calibration
    from cmt.eval.calibration import step_calibration

    judged_texts = []
    find_steps = calibration.find_steps

    def counting_find_steps(text, *args, **kwargs):
        judged_texts.append(text)
        return find_steps(text, *args, **kwargs)

    monkeypatch.setattr(calibration, "find_steps", counting_find_steps)
    seen = []
    compute_rewards = rl_module.compute_rewards

    def keeping_compute_rewards(*args, **kwargs):
        seen.append(compute_rewards(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(rl_module, "compute_rewards", keeping_compute_rewards)
    model, tokenizer = tiny
    rl, reward_cfg = rl_config("grpo", kl_coef=0.0, max_new_tokens=48)
    module = _train(model, tokenizer, rl, reward_cfg)
    rollouts_per_step = 2 * 2
    assert len(module.history) == 2 and len(seen) == 2
    assert len(judged_texts) == 2 * rollouts_per_step
    for rewards, logged in zip(seen, module.history, strict=True):
        assert logged["train/accuracy"] == sum(rewards.terms["outcome"]) / rollouts_per_step
        steps = [s for row in rewards.judged for s in row if not s.step.is_final]
        expected = step_calibration([s.confidence for s in steps], [s.correct for s in steps], rollouts_per_step)
        assert logged["train/intermediate_steps_per_rollout"] == expected["intermediate_steps"]
