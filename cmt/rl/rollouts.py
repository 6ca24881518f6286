"""One step's rollouts: ``group_size`` completions per problem, sampled under the trace protocol.

`RolloutSampler` samples from the policy with the built-in KV-cache sampler (`cmt.generation.sample`) or,
with ``rl.rollout=vllm``, from a colocated vLLM engine synced with the policy first
(`cmt.rl.vllm_rollouts`). Either way each token's log-prob comes back with it, and the rollouts are laid out
group by group (rollout ``i`` answers problem ``i // group_size``), as the reward and advantages expect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from cmt.data.problem import Problem
from cmt.eval.evaluate import Completion
from cmt.generation import Sampled, left_pad, sample
from cmt.rewards.types import Rollout, rollouts_from_sampled
from cmt.rl.settings import RLSettings
from cmt.trace import TraceProtocol, generate_traced


class RolloutSampler:
    """Samples the rollouts of `cmt.modules.rl.RLModule`.

    Args:
        policy: The model being trained (sampled in eval mode, handed back in training mode).
        tokenizer: Its tokenizer.
        render: ``question -> prompt text``.
        trace: How a rollout is generated (`cmt.trace`): ``direct``, or a plan then its execution.
        rl: The RL settings (``group_size``, ``max_new_tokens``, ``temperature``).
        generator: The random numbers of sampling (the module saves and restores their state).
        engine: A colocated vLLM engine (`cmt.rl.vllm_rollouts.VLLMRollouts`), or None: the built-in sampler.
    """

    def __init__(self, policy: torch.nn.Module, tokenizer, render: Callable[[str], str], trace: TraceProtocol,
                 rl: RLSettings, generator: torch.Generator, engine: Any = None):
        self.policy, self.tokenizer, self.render, self.trace = policy, tokenizer, render, trace
        self.rl, self.generator, self.engine = rl, generator, engine
        self.eos_ids = sorted({tokenizer.eos_token_id, tokenizer.pad_token_id} - {None})

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    @torch.no_grad()
    def rollouts(self, problems: Sequence[Problem]) -> tuple[list[Rollout], Sampled, dict[str, torch.Tensor]]:
        """Sample ``group_size`` completions per problem: ``(rollouts, their tokens and log-probs, inputs)``.

        ``direct``: the completions of the rendered prompts (``inputs`` has one row per problem).
        ``plan_execute``: each sampled plan, cut and followed by the execution cue, is the prompt of its
        rollout (``inputs`` has one row per rollout), and the execution is the completion (`cmt.trace`).
        """
        group, device = self.rl.group_size, self.device
        pad_id = self.tokenizer.pad_token_id
        if self.engine is not None:
            self.engine.sync(self.policy)

        def generate(prompts: Sequence[str], num_samples: int) -> list[Completion]:
            out = self.sample(prompts, num_samples)
            lengths = out.lengths.tolist()
            return [Completion("", out.tokens[j, :n].tolist(), out.logprobs[j, :n].tolist(), bool(out.finished[j]))
                    for j, n in enumerate(lengths)]

        prompts = [self.render(p.question) for p in problems]
        traced = generate_traced(generate, self.tokenizer, prompts, self.trace, group)
        if self.trace.name == "plan_execute":
            prompts = [t.prompt for t in traced]
        inputs = left_pad(self.tokenizer, prompts, device)
        lengths = [len(t.completion.token_ids) for t in traced]
        tokens = torch.full((len(traced), max(lengths)), pad_id, dtype=torch.long, device=device)
        logprobs = torch.zeros(tokens.shape, dtype=torch.float32, device=device)
        for row, (t, n) in enumerate(zip(traced, lengths, strict=True)):
            tokens[row, :n] = torch.tensor(t.completion.token_ids, device=device)
            logprobs[row, :n] = torch.tensor(t.completion.logprobs, device=device)
        sampled = Sampled(tokens, logprobs, torch.tensor(lengths, device=device),
                          torch.tensor([t.completion.finished for t in traced], device=device))
        rollouts = rollouts_from_sampled(self.tokenizer, sampled, [i // group for i in range(len(problems) * group)])
        return rollouts, sampled, inputs

    def sample(self, prompts: Sequence[str], num_samples: int) -> Sampled:
        """``num_samples`` completions per prompt from the built-in sampler, or from the vLLM engine (synced
        with the policy by the caller)."""
        device = self.device
        if self.engine is not None:
            seed = int(torch.randint(2**31 - 1, (1,), generator=self.generator))
            sampled = self.engine.sample(prompts, num_samples, self.rl.max_new_tokens, self.rl.temperature, seed)
            return Sampled(*(t.to(device) for t in (sampled.tokens, sampled.logprobs, sampled.lengths,
                                                     sampled.finished)))
        inputs = left_pad(self.tokenizer, prompts, device)
        self.policy.eval()
        sampled = sample(self.policy, inputs["input_ids"], inputs["attention_mask"],
                         max_new_tokens=self.rl.max_new_tokens, eos_ids=self.eos_ids,
                         pad_id=self.tokenizer.pad_token_id, temperature=self.rl.temperature,
                         generator=self.generator, num_samples=num_samples)
        self.policy.train()
        return sampled
