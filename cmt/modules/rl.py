"""The RL LightningModule: PPO / GRPO-family training with composable rewards (CCRL and its baseline).

One RL step, in ``training_step``:

1. **generate** (`cmt.rl.rollouts`): sample ``group_size`` completions per prompt with the KV cache, keeping
   each token's log-prob (these are PPO's old log-probs: the policy has not moved yet, and RL runs without
   dropout, so they are not recomputed; with ``rl.rollout=vllm`` a colocated vLLM engine samples, and the
   trainer's forward recomputes them); DAPO's dynamic sampling samples more groups until enough of them vary;
2. **score**: reward terms (`cmt.rewards`), the KL penalty to the frozen reference, critic values (PPO),
   advantages (`cmt.rl.advantages`);
3. **update**: ``epochs`` passes over the rollouts in mini-batches of ``mini_batch_size`` (one optimizer
   step each), accumulated over micro-batches of ``micro_batch_size``; the critic alone during its
   warm-up, the policy's learning rate warmed up after it.

Optimisation is manual (``automatic_optimization = False``): a step holds several optimizer steps. The
module never loads a model; `cmt.stages.rl` builds the policy, reference and critic and hands them in.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from cmt.data.problem import Problem
from cmt.eval.traced import evaluate_traced
from cmt.lm_head import split_head
from cmt.rewards.combine import RewardConfig, compute_rewards
from cmt.rl.advantages import AdvantageInputs, agreeing_groups, compute_advantages
from cmt.rl.batch import Batch, completion_slice, per_rollout
from cmt.rl.critic import Critic
from cmt.rl.dropout import disable_dropout
from cmt.rl.filters import SamplingRound, gather_groups, varied_groups
from cmt.rl.forward import completion_logprobs
from cmt.rl.losses import aggregate, kl_penalty, policy_loss, value_loss
from cmt.rl.masked import explained_variance, masked_mean
from cmt.rl.metrics import rollout_metrics
from cmt.rl.reference import reference_model
from cmt.rl.rollouts import RolloutSampler
from cmt.rl.settings import RLSettings
from cmt.rl.vllm_rollouts import truncated_importance_weights
from cmt.trace import TraceProtocol


class RLModule(pl.LightningModule):
    """Train a policy with RL on problems with gold answers.

    Args:
        policy: The causal LM being trained (its LoRA adapters, when PEFT-wrapped).
        tokenizer: Its tokenizer.
        problems: Training problems; the dataloader yields lists of their indices.
        val_problems: Held-out problems for the periodic greedy validation.
        render: ``question -> prompt text`` (the shared prompt).
        rl: The ``rl`` config node, validated by `cmt.rl.config.validate_rl_config`; read once into typed
            `cmt.rl.settings.RLSettings`.
        reward: Validated reward settings.
        optimizer: ``params -> Optimizer`` for the policy.
        reference: A separate frozen reference model, or None (no KL, or LoRA: the policy itself, see
            ``reference_adapter``).
        reference_adapter: LoRA: the name of a frozen adapter on the policy that holds the SFT adapter as it
            was when RL started; the reference runs the policy with that adapter active. None with a LoRA
            policy and no ``reference``: the policy with its adapters off (right when RL's adapters are
            fresh over SFT weights, so the base is the SFT model).
        critic: The PPO critic, or None for critic-free estimators.
        critic_optimizer: ``params -> Optimizer`` for the critic.
        val_batch_size: Batch size of validation generation.
        logits_chunk_tokens: Score completions through the LM head this many tokens at a time
            (`cmt.lm_head`); None: from the model's full logits.
        trace: How rollouts and validation generate (`cmt.trace`); None: ``direct``.
        rollout_engine: A colocated vLLM engine that samples the rollouts (``rl.rollout=vllm``,
            `cmt.rl.vllm_rollouts.VLLMRollouts`), synced with the policy before each step; None: the
            built-in sampler.

    Raises:
        UnsupportedHeadError: ``logits_chunk_tokens`` with a policy whose logits are not a plain projection.
    """

    def __init__(self, policy: torch.nn.Module, tokenizer, problems: Sequence[Problem],
                 val_problems: Sequence[Problem], render: Callable[[str], str], rl: DictConfig, reward: RewardConfig,
                 optimizer: Callable[..., torch.optim.Optimizer], reference: torch.nn.Module | None = None,
                 critic: Critic | None = None, critic_optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 val_batch_size: int = 64, logits_chunk_tokens: int | None = None,
                 reference_adapter: str | None = None, trace: TraceProtocol | None = None,
                 rollout_engine: Any = None):
        super().__init__()
        self.automatic_optimization = False
        self.policy, self.tokenizer, self.critic = policy, tokenizer, critic
        # Kept out of the module tree: frozen, never optimised, never saved with the policy.
        self._reference = [reference] if reference is not None else []
        self.reference_adapter = reference_adapter
        # Sampling runs in eval mode, the update in training mode: with dropout on, the first ratio would not be 1.
        for model in (policy, critic):
            if model is not None:
                disable_dropout(model)
        self.problems, self.val_problems, self.render = list(problems), list(val_problems), render
        self.rl, self.reward = RLSettings.of(rl), reward
        self.optimizer_factory, self.critic_optimizer_factory = optimizer, critic_optimizer
        self.val_batch_size = val_batch_size
        self.logits_chunk_tokens = logits_chunk_tokens
        self.trace = trace or TraceProtocol()
        if logits_chunk_tokens is not None:
            split_head(policy)
        # The rollouts' random numbers, seeded from the job's seed; a resumed run restores their state instead.
        self.generator = torch.Generator().manual_seed(int(torch.initial_seed()) % (2**63))
        self.sampler = RolloutSampler(policy, tokenizer, render, self.trace, self.rl, self.generator, rollout_engine)
        self.history: list[dict[str, float]] = []

    # ---------------------------------------------------------------- setup
    def configure_optimizers(self) -> Any:
        optimizers = [self.optimizer_factory(params=[p for p in self.policy.parameters() if p.requires_grad])]
        if self.critic is not None:
            optimizers.append(self.critic_optimizer_factory(params=list(self.critic.parameters())))
        for group in optimizers[0].param_groups:
            # The configured rate, which the warm-up scales (`_warm_up`); saved with the optimizer state.
            group.setdefault("base_lr", group["lr"])
        return optimizers

    def _critic_warmup(self) -> int:
        """RL steps that train only the critic (``rl.critic.warmup_steps``; 0 without a critic)."""
        return self.rl.critic.warmup_steps if self.critic is not None else 0

    def _warm_up(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set the policy's learning rate for RL step ``step`` (0-based) and return it.

        Linear warm-up over the first ``rl.warmup_steps`` policy updates (counted after the critic's warm-up):
        the k-th update (k = 1, 2, ...) runs at ``k / (warmup_steps + 1)`` of the configured rate, the full
        rate from update ``warmup_steps + 1`` on. The first updates see advantages from a fresh critic and
        Adam's first moment estimates, both noisy; small steps there keep them from pushing the policy far.
        """
        update = step - self._critic_warmup() + 1
        factor = min(1.0, update / (self.rl.warmup_steps + 1)) if update > 0 else 0.0
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        return optimizer.param_groups[0]["lr"]

    def on_fit_start(self) -> None:
        """Put the separate reference on the policy's device and in its dtype.

        The reference is kept out of the module tree (never optimised, never saved), so Lightning neither
        moves it to the GPU nor converts it to a ``*-true`` precision along with the policy.
        """
        dtype = next(p for p in self.policy.parameters() if p.is_floating_point()).dtype
        for reference in self._reference:
            reference.to(device=self.device, dtype=dtype)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the rollout sampler's state and the per-step history in a resumable checkpoint (Lightning
        saves weights, optimizers and loop counters)."""
        checkpoint["rl"] = {"generator": self.generator.get_state(), "history": self.history}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.generator.set_state(checkpoint["rl"]["generator"])
        self.history = list(checkpoint["rl"]["history"])

    # ---------------------------------------------------------------- one step
    def _forward(self, model: torch.nn.Module, rows: dict[str, torch.Tensor], entropy: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T) log-probs of the completion tokens under ``model`` (sampling temperature), and their entropies."""
        return completion_logprobs(model, rows, self.rl.temperature, self.logits_chunk_tokens, entropy)

    def _refill(self, first: SamplingRound) -> tuple[SamplingRound, dict[str, float]]:
        """DAPO's dynamic sampling: sample more groups until ``prompts_per_step`` groups whose rewards vary are
        found, or ``dynamic_sampling.max_rounds`` rounds were sampled; the batch of the kept groups.

        Extra problems are drawn at random from the training problems with the rollout generator (so a resumed
        run draws the same). Where every round's groups agree, the first round comes back with nothing kept.
        """
        group, target = self.rl.group_size, len(first.problems)
        tolerance = self.rl.dynamic_sampling.tolerance
        rounds, generate_time = [first], 0.0
        while (sum(int(r.keep.sum()) for r in rounds) < target * group
               and len(rounds) < self.rl.dynamic_sampling.max_rounds):
            started = time.perf_counter()
            problems = [self.problems[int(i)] for i in torch.randint(len(self.problems), (target,),
                                                                     generator=self.generator)]
            rollouts, sampled, inputs = self.sampler.rollouts(problems)
            generate_time += time.perf_counter() - started
            scores = compute_rewards(rollouts, problems, self.reward).scores()
            rounds.append(SamplingRound(problems, rollouts, sampled, inputs, varied_groups(scores, group, tolerance)))
        kept = sum(int(r.keep.sum()) for r in rounds) // group
        metrics = {"train/sampling_rounds": float(len(rounds)), "train/kept_groups": float(min(kept, target)),
                   "timing/refill_generate": generate_time}
        if kept == 0:
            return dataclasses.replace(first, keep=torch.zeros_like(first.keep)), metrics
        problems, rollouts, sampled, inputs = gather_groups(rounds, group, target, self.tokenizer.pad_token_id)
        return SamplingRound(problems, rollouts, sampled, inputs, torch.ones(len(rollouts), dtype=torch.bool)), metrics

    @torch.no_grad()
    def score(self, problems: Sequence[Problem]) -> tuple[Batch, dict[str, float]]:
        """Rollouts, rewards, KL penalty, values and advantages of one step.

        The logged rollout statistics (accuracy, rewards, calibration) are those of the step's own problems,
        before dynamic sampling picks groups to train on.
        """
        group = self.rl.group_size
        rollouts, sampled, inputs = self.sampler.rollouts(problems)
        started = time.perf_counter()
        rewards = compute_rewards(rollouts, problems, self.reward)
        outcomes = torch.tensor(rewards.terms["outcome"], dtype=torch.float32)
        metrics = dict(rewards.metrics())
        metrics.update(rollout_metrics(rewards, sampled))
        metrics["train/zero_variance_groups"] = agreeing_groups(outcomes, group)
        keep = torch.ones(len(rollouts), dtype=torch.bool)
        if self.rl.dynamic_sampling.enabled:
            first = SamplingRound(list(problems), rollouts, sampled, inputs, varied_groups(
                rewards.scores(), group, self.rl.dynamic_sampling.tolerance))
            chosen, refill = self._refill(first)
            metrics.update(refill)
            started += refill["timing/refill_generate"]
            problems, rollouts, sampled, inputs, keep = (chosen.problems, chosen.rollouts, chosen.sampled,
                                                         chosen.inputs, chosen.keep)
            if chosen.rollouts is not first.rollouts:
                rewards = compute_rewards(rollouts, problems, self.reward)
                outcomes = torch.tensor(rewards.terms["outcome"], dtype=torch.float32)
        batch = Batch(inputs["input_ids"], inputs["attention_mask"], sampled.tokens, sampled.lengths,
                      sampled.tokens.shape[0] // inputs["input_ids"].shape[0])  # rollouts per prompt row
        token_rewards = rewards.token_rewards(batch.tokens.shape[1]).to(batch.mask.device)
        batch.fields["old_logprobs"] = sampled.logprobs.float()
        # Forward passes over all rollouts go micro-batch by micro-batch (with a real vocabulary the logits of
        # every rollout at once would take gigabytes), each over rollouts cheap to run together, cut to their width.
        chunks = batch.chunks(range(len(rollouts)), self.rl.micro_batch_size)
        if self.sampler.engine is not None:
            # The engine's log-probs are the behaviour policy's: the ratio starts from the trainer's own, and
            # each token's loss is weighted by min(pi_trainer / pi_engine, cap) (cmt.rl.vllm_rollouts).
            trainer = per_rollout(batch, chunks, lambda rows: self._forward(self.policy, rows)[0])
            weights, mismatch = truncated_importance_weights(trainer, batch.fields["old_logprobs"], batch.mask,
                                                             self.rl.rollout_is_cap)
            batch.fields["old_logprobs"], batch.fields["is_weights"] = trainer, weights
            metrics.update(mismatch)
        if self.rl.kl_coef > 0:
            separate = self._reference[0] if self._reference else None
            with reference_model(self.policy, separate, self.reference_adapter) as reference:
                ref_logprobs = per_rollout(batch, chunks, lambda rows: self._forward(reference, rows)[0])
            batch.fields["ref_logprobs"] = ref_logprobs
            if self.rl.kl_mode == "reward":
                penalty = kl_penalty(batch.fields["old_logprobs"], ref_logprobs, self.rl.kl_estimator) * batch.mask
                token_rewards = token_rewards - self.rl.kl_coef * penalty
        values = None
        if self.critic is not None:
            values = per_rollout(batch, chunks, lambda rows: completion_slice(
                self.critic(rows["input_ids"], rows["attention_mask"], rows["position_ids"]), rows))
            batch.fields["old_values"] = values * batch.mask
        advantages = compute_advantages(self.rl.advantage, AdvantageInputs(
            token_rewards=token_rewards, mask=batch.mask, values=values, gamma=self.rl.gamma,
            lam=self.rl.lam, whiten=self.rl.whiten_advantages, group_size=group,
            scale=self.rl.advantage_scale, outcomes=outcomes))
        batch.fields["advantages"] = advantages.advantages
        if advantages.returns is not None:
            batch.fields["returns"] = advantages.returns
            metrics["train/explained_variance"] = explained_variance(values, advantages.returns, batch.mask)
        batch.fields["keep"] = keep
        metrics["timing/score"] = time.perf_counter() - started
        return batch, metrics

    def _update(self, batch: Batch, update_policy: bool = True) -> dict[str, float]:
        """``epochs`` passes of mini-batch updates over the kept rollouts; returns mean diagnostics.

        With ``update_policy`` False (the critic's warm-up) only the critic's loss is computed and stepped.
        """
        rl = self.rl
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        if not update_policy:
            optimizers = optimizers[1:]
        kept = torch.nonzero(batch.fields["keep"]).squeeze(1).tolist()
        mini, micro = rl.mini_batch_size, rl.micro_batch_size
        stats: dict[str, list[float]] = {}
        order_rng = random.Random(int(self.global_step))
        for _ in range(rl.epochs):
            order_rng.shuffle(kept)
            # Whole mini-batches only: when dynamic sampling keeps fewer rollouts than a step holds, the ragged
            # remainder (another one each epoch) is left out rather than given a full optimizer step.
            for start in range(0, len(kept) - mini + 1, mini):
                minibatch = kept[start:start + mini]
                num_tokens = float(batch.mask[minibatch].sum())
                # Gradients add up over the micro-batches, so how rollouts are grouped into them changes no result.
                for index in batch.chunks(minibatch, micro):
                    loss, step_stats = self.loss(batch.rows(index), num_tokens, len(minibatch), update_policy)
                    self.manual_backward(loss)
                    for name, value in step_stats.items():
                        stats.setdefault(name, []).append(value)
                for optimizer in optimizers:
                    self.clip_gradients(optimizer, gradient_clip_val=rl.max_grad_norm,
                                        gradient_clip_algorithm="norm")
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
        means = {name: sum(values) / len(values) for name, values in stats.items()}
        return {**means, "train/updated_rollouts": float(len(kept) // mini * mini)}

    def loss(self, rows: dict[str, torch.Tensor], num_tokens: float, num_sequences: int, update_policy: bool = True
              ) -> tuple[torch.Tensor, dict[str, float]]:
        """The policy (+ KL in the loss, + critic) loss of one micro-batch, scaled to its share of the mini-batch;
        the critic's alone when not ``update_policy``."""
        rl = self.rl
        if not update_policy:
            return self._critic_loss(rows, num_tokens, num_sequences)
        logprobs, entropy = self._forward(self.policy, rows, entropy=True)
        mask = rows["mask"]
        result = policy_loss(rl.policy_loss, logprobs, rows["old_logprobs"], rows["advantages"], mask,
                             clip_low=rl.clip_low, clip_high=rl.clip_high,
                             aggregation=rl.loss_aggregation, max_length=rl.max_new_tokens,
                             num_tokens=num_tokens, num_sequences=float(num_sequences),
                             token_weights=rows.get("is_weights"))
        loss = result.loss
        stats = {"train/policy_loss": result.loss.item(), "train/clip_fraction": float(result.clip_fraction),
                 "train/approx_kl": float(result.approx_kl)}
        stats["train/entropy"] = float(entropy.mean())
        if "ref_logprobs" in rows:
            kl = kl_penalty(logprobs, rows["ref_logprobs"], rl.kl_estimator)
            stats["train/kl"] = float(masked_mean(kl.detach(), mask))
            if rl.kl_mode == "loss":
                loss = loss + rl.kl_coef * aggregate(
                    kl, mask, rl.loss_aggregation, max_length=rl.max_new_tokens, num_tokens=num_tokens,
                    num_sequences=float(num_sequences))
        if self.critic is not None:
            critic_loss, critic_stats = self._critic_loss(rows, num_tokens, num_sequences)
            loss = loss + critic_loss
            stats.update(critic_stats)
        return loss, stats

    def _critic_loss(self, rows: dict[str, torch.Tensor], num_tokens: float, num_sequences: int
                     ) -> tuple[torch.Tensor, dict[str, float]]:
        """The critic's clipped value loss of one micro-batch, and its statistics."""
        values = completion_slice(self.critic(rows["input_ids"], rows["attention_mask"], rows["position_ids"]), rows)
        loss, value_clip = value_loss(values, rows["old_values"], rows["returns"], rows["mask"],
                                      clip=self.rl.critic.value_clip, num_tokens=num_tokens,
                                      num_sequences=float(num_sequences))
        return loss, {"train/value_loss": loss.item(), "train/value_clip_fraction": float(value_clip)}

    def training_step(self, batch_indices: list[int], batch_idx: int) -> None:
        problems = [self.problems[int(i)] for i in batch_indices]
        started = time.perf_counter()
        batch, metrics = self.score(problems)
        metrics["timing/generate"] = time.perf_counter() - started - metrics["timing/score"]
        started = time.perf_counter()
        step = len(self.history)
        update_policy = step >= self._critic_warmup()
        optimizers = self.optimizers()
        metrics["train/lr"] = self._warm_up(optimizers[0] if isinstance(optimizers, list) else optimizers, step)
        metrics.update(self._update(batch, update_policy))
        metrics["timing/update"] = time.perf_counter() - started
        metrics["train/rl_step"] = float(batch_idx + 1)
        self.history.append(metrics)
        size = len(batch_indices)
        self.log_dict({k: v for k, v in metrics.items() if not math.isnan(v)}, on_step=True, prog_bar=False,
                      batch_size=size)
        self.log("reward", metrics["reward/total"], prog_bar=True, batch_size=size)

    # ---------------------------------------------------------------- validation
    def validation_step(self, batch_indices: list[int], batch_idx: int) -> None:
        problems = [self.val_problems[int(i)] for i in batch_indices]
        prompts = [self.render(p.question) for p in problems]
        values, _ = evaluate_traced(self.policy, self.tokenizer, problems, prompts, self.trace,
                                    self.rl.max_new_tokens, self.val_batch_size, desc="validate")
        self.log("val/accuracy", values["accuracy"], prog_bar=True, batch_size=len(problems))
        self.log("val/ece", values["ece"], batch_size=len(problems))
        self.policy.train()
