"""The RL LightningModule: PPO / GRPO-family training with composable rewards (CCRL and its baseline).

One RL step, in ``training_step``:

1. **generate**: sample ``group_size`` completions per prompt with the KV cache, keeping each token's
   log-prob (these are PPO's old log-probs: the policy has not moved yet, so they are not recomputed;
   with ``rl.rollout=vllm`` a colocated vLLM engine samples, and the trainer's forward recomputes them);
2. **score**: reward terms (`cmt.rewards`), the KL penalty to the frozen reference, critic values (PPO),
   advantages (`cmt.rl.advantages`);
3. **update**: ``epochs`` passes over the rollouts in mini-batches of ``mini_batch_size`` (one optimizer
   step each), accumulated over micro-batches of ``micro_batch_size``.

Optimisation is manual (``automatic_optimization = False``): a step holds several optimizer steps. The
module never loads a model; `cmt.stages.rl` builds the policy, reference and critic and hands them in.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from cmt.data.problem import Problem
from cmt.eval.calibration import expected_calibration_error
from cmt.eval.evaluate import evaluate
from cmt.generation import Sampled, left_pad, positions, sample
from cmt.lm_head import split_head
from cmt.rewards.calibration import judge_steps
from cmt.rewards.combine import RewardConfig, compute_rewards
from cmt.rewards.outcome import answer_correct
from cmt.rewards.types import rollouts_from_sampled
from cmt.rl.advantages import AdvantageInputs, compute_advantages
from cmt.rl.filters import varied_groups
from cmt.rl.forward import completion_logprobs
from cmt.rl.losses import kl_penalty, policy_loss, value_loss
from cmt.rl.masked import completion_mask, masked_mean
from cmt.rl.vllm_rollouts import truncated_importance_weights


class Critic(torch.nn.Module):
    """A value model: a transformer trunk and a scalar head, one value per position."""

    def __init__(self, trunk: torch.nn.Module, hidden_size: int):
        super().__init__()
        self.trunk = trunk
        self.head = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) float32 values.

        The head runs outside autocast, in its weights' dtype: under ``bf16-mixed`` they are float32, and
        values keep float32's precision (bf16 keeps 8 significant bits, steps of 0.004-0.008 near 1: as coarse as
        the differences GAE takes between neighbouring values).
        """
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        with torch.autocast(hidden.device.type, enabled=False):
            return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float()


class Batch:
    """The rollouts of one RL step as tensors: prompt + completion, and everything the update reads.

    ``input_ids`` is ``[prompt | completion]``: prompts left-padded to ``prompt_width``, completions
    right-padded to the longest rollout. Rollouts come group by group, ``group_size`` per prompt; the distinct
    prompts are kept too (``prompt_ids``), so that a forward pass can run each of them once. Fields added in
    ``fields`` are (B,) or (B, T) over completion tokens.
    """

    def __init__(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, tokens: torch.Tensor,
                 lengths: torch.Tensor, group_size: int):
        self.prompt_ids, self.prompt_mask = prompt_ids, prompt_mask
        self.prompt_width = prompt_ids.shape[1]
        # Each rollout's prompt (a row of prompt_ids); on the host, like the lengths: chunking and cutting
        # read them for every micro-batch.
        self.owner = torch.arange(tokens.shape[0]) // group_size
        self.prompt_lengths = prompt_mask.sum(1).cpu()[self.owner]
        self.lengths = lengths.cpu()
        self.mask = completion_mask(lengths, tokens.shape[1]).float()
        self.input_ids = torch.cat([prompt_ids[self.owner], tokens], dim=1)
        self.attention_mask = torch.cat([prompt_mask[self.owner], self.mask.long()], dim=1)
        self.position_ids = positions(self.attention_mask)
        self.tokens = tokens
        self.fields: dict[str, torch.Tensor] = {}

    def chunks(self, index: Sequence[int] | torch.Tensor, size: int) -> list[torch.Tensor]:
        """``index`` split into chunks of ``size`` rollouts that are cheap to run together (`rows` cuts each).

        Two orders are tried: by prompt + completion length (narrow chunks) and by prompt, then completion
        length (fewer distinct prompts per chunk, each of which runs once); the one whose chunks cost fewer
        tokens (`_tokens`) is kept. With the bundled tiny model's rollouts the second saves 9% of the tokens.
        """
        index = torch.as_tensor(index, dtype=torch.long)
        by_length = index[torch.argsort((self.prompt_lengths + self.lengths)[index], stable=True)]
        by_prompt = index[torch.argsort(self.owner[index] * (int(self.lengths.max()) + 1) + self.lengths[index],
                                        stable=True)]
        orders = [order.split(size) for order in (by_length, by_prompt)]
        return list(min(orders, key=lambda chunks: sum(self._tokens(chunk) for chunk in chunks)))

    def _tokens(self, chunk: torch.Tensor) -> int:
        """Tokens a forward pass over ``chunk`` processes: its distinct prompts once each, cut to the longest
        of them, and each row's completion to the longest one."""
        prompts = len(torch.unique(self.owner[chunk]))
        return prompts * int(self.prompt_lengths[chunk].max()) + len(chunk) * max(int(self.lengths[chunk].max()), 1)

    def rows(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tensors of a subset of rollouts (a micro-batch), cut to the columns its rows use.

        Left padding that every picked prompt has, and completion columns past the longest picked rollout,
        are dropped. They are masked out of attention and loss, so every log-prob, value and loss is the
        same as on the full width; only the forward pass gets cheaper. (B, T) fields are cut to match;
        the completion starts at column ``input_ids.shape[1] - tokens.shape[1]``. ``prompt_ids`` and
        ``prompt_mask`` hold the distinct prompts of the picked rows (cut alike), ``owner`` each row's among them.
        """
        lead = self.prompt_width - int(self.prompt_lengths[index].max())
        width = max(int(self.lengths[index].max()), 1)
        columns = slice(lead, self.prompt_width + width)
        prompts, owner = torch.unique(self.owner[index], return_inverse=True)
        picked = {"input_ids": self.input_ids[index, columns], "attention_mask": self.attention_mask[index, columns],
                  "position_ids": self.position_ids[index, columns], "tokens": self.tokens[index, :width],
                  "mask": self.mask[index, :width], "prompt_ids": self.prompt_ids[prompts, lead:],
                  "prompt_mask": self.prompt_mask[prompts, lead:], "owner": owner.to(self.tokens.device)}
        for name, value in self.fields.items():
            picked[name] = value[index, :width] if value.dim() == 2 else value[index]
        return picked


def completion_slice(values: torch.Tensor, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """Of (B, L) per-position ``values`` over ``rows["input_ids"]``: positions ``P-1 .. P+T-2``, the ones
    that predict the completion's T tokens (and hold their state), P the prompt's width in ``rows``."""
    width = rows["tokens"].shape[1]
    prompt_width = rows["input_ids"].shape[1] - width
    return values[:, prompt_width - 1:prompt_width - 1 + width]


def _per_rollout(batch: Batch, chunks: Sequence[torch.Tensor],
                 compute: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> torch.Tensor:
    """(B, T) ``compute(rows)`` over every rollout, one chunk at a time, each in its rollouts' place; zero in
    the columns past a chunk's cut width (past every one of its rollouts' ends)."""
    out = torch.zeros(batch.tokens.shape, dtype=torch.float32, device=batch.tokens.device)
    for index in chunks:
        values = compute(batch.rows(index))
        out[index, :values.shape[1]] = values.float()
    return out


class RLModule(pl.LightningModule):
    """Train a policy with RL on problems with gold answers.

    Args:
        policy: The causal LM being trained (its LoRA adapters, when PEFT-wrapped).
        tokenizer: Its tokenizer.
        problems: Training problems; the dataloader yields lists of their indices.
        val_problems: Held-out problems for the periodic greedy validation.
        render: ``question -> prompt text`` (the shared prompt).
        rl: The ``rl`` config node (validated by `cmt.rl.config.validate_rl_config`).
        reward: Validated reward settings.
        optimizer: ``params -> Optimizer`` for the policy.
        reference: The frozen reference model, or None (no KL, or LoRA: the policy with adapters off).
        critic: The PPO critic, or None for critic-free estimators.
        critic_optimizer: ``params -> Optimizer`` for the critic.
        val_batch_size: Batch size of validation generation.
        logits_chunk_tokens: Score completions through the LM head this many tokens at a time
            (`cmt.lm_head`); None: from the model's full logits.
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
                 val_batch_size: int = 64, logits_chunk_tokens: int | None = None, rollout_engine: Any = None):
        super().__init__()
        self.automatic_optimization = False
        self.policy, self.tokenizer, self.critic = policy, tokenizer, critic
        # Kept out of the module tree: frozen, never optimised, never saved with the policy.
        self._reference = [reference] if reference is not None else []
        self.problems, self.val_problems, self.render = list(problems), list(val_problems), render
        self.rl, self.reward = rl, reward
        self.optimizer_factory, self.critic_optimizer_factory = optimizer, critic_optimizer
        self.val_batch_size = val_batch_size
        self.logits_chunk_tokens = logits_chunk_tokens
        self.rollout_engine = rollout_engine
        if logits_chunk_tokens is not None:
            split_head(policy)
        # The rollouts' sampler, seeded from the job's seed; a resumed run restores its state instead.
        self.generator = torch.Generator().manual_seed(int(torch.initial_seed()) % (2**63))
        self.eos_ids = sorted({tokenizer.eos_token_id, tokenizer.pad_token_id} - {None})
        self.history: list[dict[str, float]] = []

    # ---------------------------------------------------------------- setup
    def configure_optimizers(self) -> Any:
        optimizers = [self.optimizer_factory(params=[p for p in self.policy.parameters() if p.requires_grad])]
        if self.critic is not None:
            optimizers.append(self.critic_optimizer_factory(params=list(self.critic.parameters())))
        return optimizers

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

    @contextlib.contextmanager
    def _reference_model(self) -> Iterator[torch.nn.Module]:
        """The frozen reference: a separate model, or the policy with its LoRA adapters disabled.

        The policy-as-reference runs in eval mode, like a separate reference: no dropout, and no activation
        checkpointing, which would stop `cmt.rl.forward` from running each prompt once.
        """
        if self._reference:
            yield self._reference[0]
        else:
            was_training = self.policy.training
            self.policy.eval()
            try:
                with self.policy.disable_adapter():
                    yield self.policy
            finally:
                self.policy.train(was_training)

    # ---------------------------------------------------------------- one step
    def _forward(self, model: torch.nn.Module, rows: dict[str, torch.Tensor], entropy: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T) log-probs of the completion tokens under ``model`` (sampling temperature), and their entropies."""
        return completion_logprobs(model, rows, float(self.rl.temperature), self.logits_chunk_tokens, entropy)

    @torch.no_grad()
    def _rollout(self, problems: Sequence[Problem]):
        """Sample ``group_size`` completions per problem; rows are laid out group by group."""
        group = int(self.rl.group_size)
        prompts = [self.render(p.question) for p in problems]
        inputs = left_pad(self.tokenizer, prompts, self.device)
        sampled = self._sample(prompts, inputs, group)
        rollouts = rollouts_from_sampled(self.tokenizer, sampled, [i // group for i in range(len(problems) * group)])
        return rollouts, sampled, inputs

    def _sample(self, prompts: Sequence[str], inputs: dict[str, torch.Tensor], num_samples: int) -> Sampled:
        """``num_samples`` completions per prompt from the built-in sampler, or from the vLLM engine (given the
        policy's current weights first)."""
        if self.rollout_engine is not None:
            self.rollout_engine.sync(self.policy)
            seed = int(torch.randint(2**31 - 1, (1,), generator=self.generator))
            sampled = self.rollout_engine.sample(prompts, num_samples, int(self.rl.max_new_tokens),
                                                 float(self.rl.temperature), seed)
            return Sampled(*(t.to(self.device) for t in (sampled.tokens, sampled.logprobs, sampled.lengths,
                                                          sampled.finished)))
        self.policy.eval()
        sampled = sample(self.policy, **inputs, max_new_tokens=int(self.rl.max_new_tokens), eos_ids=self.eos_ids,
                         pad_id=self.tokenizer.pad_token_id, temperature=float(self.rl.temperature),
                         generator=self.generator, num_samples=num_samples)
        self.policy.train()
        return sampled

    @torch.no_grad()
    def _score(self, problems: Sequence[Problem]) -> tuple[Batch, dict[str, float]]:
        """Rollouts, rewards, KL penalty, values and advantages of one step."""
        group = int(self.rl.group_size)
        rollouts, sampled, inputs = self._rollout(problems)
        started = time.perf_counter()
        rewards = compute_rewards(rollouts, problems, self.reward)
        scores = rewards.scores()
        keep = torch.ones(len(rollouts), dtype=torch.bool)
        if self.rl.dynamic_sampling.enabled:
            keep = varied_groups(scores, group, float(self.rl.dynamic_sampling.tolerance))
        batch = Batch(inputs["input_ids"], inputs["attention_mask"], sampled.tokens, sampled.lengths, group)
        token_rewards = rewards.token_rewards(batch.tokens.shape[1]).to(batch.mask.device)
        batch.fields["old_logprobs"] = sampled.logprobs.float()
        metrics = dict(rewards.metrics())
        # Forward passes over all rollouts go micro-batch by micro-batch (with a real vocabulary the logits of
        # every rollout at once would take gigabytes), each over rollouts cheap to run together, cut to their width.
        chunks = batch.chunks(range(len(rollouts)), int(self.rl.micro_batch_size))
        if self.rollout_engine is not None:
            # The engine's log-probs are the behaviour policy's: the ratio starts from the trainer's own, and
            # each token's loss is weighted by min(pi_trainer / pi_engine, cap) (cmt.rl.vllm_rollouts).
            trainer = _per_rollout(batch, chunks, lambda rows: self._forward(self.policy, rows)[0])
            weights, mismatch = truncated_importance_weights(trainer, batch.fields["old_logprobs"], batch.mask,
                                                             float(self.rl.rollout_is_cap))
            batch.fields["old_logprobs"], batch.fields["is_weights"] = trainer, weights
            metrics.update(mismatch)
        if float(self.rl.kl_coef) > 0:
            with self._reference_model() as reference:
                ref_logprobs = _per_rollout(batch, chunks, lambda rows: self._forward(reference, rows)[0])
            batch.fields["ref_logprobs"] = ref_logprobs
            if self.rl.kl_mode == "reward":
                penalty = kl_penalty(batch.fields["old_logprobs"], ref_logprobs, self.rl.kl_estimator) * batch.mask
                token_rewards = token_rewards - float(self.rl.kl_coef) * penalty
        values = None
        if self.critic is not None:
            values = _per_rollout(batch, chunks, lambda rows: completion_slice(
                self.critic(rows["input_ids"], rows["attention_mask"], rows["position_ids"]), rows))
            batch.fields["old_values"] = values * batch.mask
        advantages = compute_advantages(self.rl.advantage, AdvantageInputs(
            token_rewards=token_rewards, mask=batch.mask, values=values, gamma=float(self.rl.gamma),
            lam=float(self.rl.lam), whiten=bool(self.rl.whiten_advantages), group_size=group,
            scale=str(self.rl.advantage_scale)))
        batch.fields["advantages"] = advantages.advantages
        if advantages.returns is not None:
            batch.fields["returns"] = advantages.returns
        batch.fields["keep"] = keep
        metrics.update(self._rollout_metrics(rollouts, problems, sampled, scores, group))
        metrics["timing/score"] = time.perf_counter() - started
        return batch, metrics

    def _rollout_metrics(self, rollouts, problems, sampled, scores: torch.Tensor, group: int) -> dict[str, float]:
        """Accuracy, step calibration and shape statistics of the sampled rollouts."""
        confidences, correct = [], []
        for rollout in rollouts:
            for step in judge_steps(rollout, problems[rollout.problem_index], extraction=self.reward.extraction,
                                    confidence=self.reward.confidence, correctness=self.reward.correctness):
                confidences.append(step.confidence)
                correct.append(step.correct)
        right = [c for c, k in zip(confidences, correct) if k]
        wrong = [c for c, k in zip(confidences, correct) if not k]
        groups = scores.reshape(-1, group)
        lengths = sampled.lengths.float()
        return {
            "train/accuracy": sum(answer_correct(r, problems[r.problem_index], self.reward.extraction)
                                  for r in rollouts) / len(rollouts),
            "train/steps_per_rollout": len(confidences) / len(rollouts),
            "train/confidence_correct_steps": sum(right) / len(right) if right else float("nan"),
            "train/confidence_wrong_steps": sum(wrong) / len(wrong) if wrong else float("nan"),
            "train/step_ece": expected_calibration_error(confidences, correct) if confidences else float("nan"),
            "train/overconfident_step_error_rate": sum(c > 0.9 for c in wrong) / max(len(confidences), 1),
            "train/zero_variance_groups": float((groups.max(1).values == groups.min(1).values).float().mean()),
            "train/completion_length": float(lengths.mean()),
            "train/truncation_rate": float((~sampled.finished).float().mean()),
        }

    def _update(self, batch: Batch) -> dict[str, float]:
        """``epochs`` passes of mini-batch updates over the kept rollouts; returns mean diagnostics."""
        rl = self.rl
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        kept = torch.nonzero(batch.fields["keep"]).squeeze(1).tolist()
        mini, micro = int(rl.mini_batch_size), int(rl.micro_batch_size)
        stats: dict[str, list[float]] = {}
        order_rng = random.Random(int(self.global_step))
        for _ in range(int(rl.epochs)):
            order_rng.shuffle(kept)
            for start in range(0, len(kept), mini):
                minibatch = kept[start:start + mini]
                if not minibatch:
                    continue
                num_tokens = float(batch.mask[minibatch].sum())
                # Gradients add up over the micro-batches, so how rollouts are grouped into them changes no result.
                for index in batch.chunks(minibatch, micro):
                    loss, step_stats = self._loss(batch.rows(index), num_tokens, len(minibatch))
                    self.manual_backward(loss)
                    for name, value in step_stats.items():
                        stats.setdefault(name, []).append(value)
                for optimizer in optimizers:
                    self.clip_gradients(optimizer, gradient_clip_val=float(rl.max_grad_norm),
                                        gradient_clip_algorithm="norm")
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
        return {name: sum(values) / len(values) for name, values in stats.items()}

    def _loss(self, rows: dict[str, torch.Tensor], num_tokens: float, num_sequences: int
              ) -> tuple[torch.Tensor, dict[str, float]]:
        """The policy (+ KL in the loss, + critic) loss of one micro-batch, scaled to its share of the mini-batch."""
        rl = self.rl
        logprobs, entropy = self._forward(self.policy, rows, entropy=True)
        mask = rows["mask"]
        result = policy_loss(rl.policy_loss, logprobs, rows["old_logprobs"], rows["advantages"], mask,
                             clip_low=float(rl.clip_low), clip_high=float(rl.clip_high),
                             aggregation=str(rl.loss_aggregation), max_length=int(rl.max_new_tokens),
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
                loss = loss + float(rl.kl_coef) * (kl * mask).sum() / num_tokens
        if self.critic is not None:
            values = completion_slice(self.critic(rows["input_ids"], rows["attention_mask"], rows["position_ids"]),
                                      rows)
            critic_loss, value_clip = value_loss(values, rows["old_values"], rows["returns"], mask,
                                                 clip=float(rl.critic.value_clip), num_tokens=num_tokens,
                                                 num_sequences=float(num_sequences))
            loss = loss + critic_loss
            stats.update({"train/value_loss": critic_loss.item(), "train/value_clip_fraction": float(value_clip)})
        return loss, stats

    def training_step(self, batch_indices: list[int], batch_idx: int) -> None:
        problems = [self.problems[int(i)] for i in batch_indices]
        started = time.perf_counter()
        batch, metrics = self._score(problems)
        metrics["timing/generate"] = time.perf_counter() - started - metrics["timing/score"]
        started = time.perf_counter()
        metrics.update(self._update(batch))
        metrics["timing/update"] = time.perf_counter() - started
        metrics["train/rl_step"] = float(batch_idx + 1)
        self.history.append(metrics)
        size = len(batch_indices)
        self.log_dict({k: v for k, v in metrics.items() if not math.isnan(v)}, on_step=True, prog_bar=False, batch_size=size)
        self.log("reward", metrics["reward/total"], prog_bar=True, batch_size=size)

    # ---------------------------------------------------------------- validation
    def validation_step(self, batch_indices: list[int], batch_idx: int) -> None:
        problems = [self.val_problems[int(i)] for i in batch_indices]
        values, _ = evaluate(self.policy, self.tokenizer, problems, [self.render(p.question) for p in problems],
                             int(self.rl.max_new_tokens), self.val_batch_size, desc="validate")
        self.log("val/accuracy", values["accuracy"], prog_bar=True, batch_size=len(problems))
        self.log("val/ece", values["ece"], batch_size=len(problems))
        self.policy.train()
