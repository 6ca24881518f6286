"""The logits of rollouts' completions under a model, with each prompt run through it once per group.

The rollouts of one RL step come in groups that share a prompt (``group_size`` completions per problem). A
forward pass over ``[prompt | completion]`` rows computes every prompt ``group_size`` times; here the
prompts of a micro-batch go through the model once, their KV cache is copied to the rows that continue
them, and the completions run on top of it. The logits are the same (exactly so with eager attention) and
gradients flow back through the copied cache into the prompt's single pass, so the policy's update and the
reference's scoring pay for a prompt once per micro-batch instead of once per rollout (the PPO critic still
reads whole rows).

Activation checkpointing re-runs each layer in the backward pass, and transformers drops the KV cache of a
checkpointed model in training mode; such a model gets the plain ``[prompt | completion]`` pass.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from cmt.generation import positions


def completion_logits(model: torch.nn.Module, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, T, V) logits whose position ``t`` predicts ``rows["tokens"][:, t]``.

    Args:
        model: A causal LM (PEFT-wrapped or not).
        rows: A micro-batch as ``cmt.modules.rl.Batch.rows`` cuts it: ``input_ids``/``attention_mask``/
            ``position_ids`` over ``[prompt | completion]``, ``tokens`` (B, T), ``prompt_ids``/``prompt_mask``
            (U, P) of the distinct prompts and ``owner`` (B,), each row's prompt among them.
    """
    if model.training and _checkpointed(model):
        return _full_rows(model, rows)
    return _prompts_once(model, rows)


def _checkpointed(model: torch.nn.Module) -> bool:
    """Whether any layer re-runs in the backward pass (the flag transformers' checkpointed layers read)."""
    return any(getattr(module, "gradient_checkpointing", False) for module in model.modules())


def _full_rows(model: torch.nn.Module, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """One pass over every row's ``[prompt | completion]``."""
    width = rows["tokens"].shape[1]
    return model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"],
                 position_ids=rows["position_ids"], logits_to_keep=width + 1).logits[:, :-1]


def _prompts_once(model: torch.nn.Module, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """One pass over the distinct prompts, then one over the completions on their copied KV cache."""
    prompt_mask, owner, tokens = rows["prompt_mask"], rows["owner"], rows["tokens"]
    cache = DynamicCache()
    prompt_out = model(input_ids=rows["prompt_ids"], attention_mask=prompt_mask,
                       position_ids=positions(prompt_mask), past_key_values=cache,
                       use_cache=True, logits_to_keep=1)
    # The last prompt position predicts the first completion token.
    first = prompt_out.logits.index_select(0, owner)
    width = tokens.shape[1]
    if width == 1:
        return first
    _copy_rows(cache, owner)
    # Every completion token but the last is an input (the last one predicts nothing the loss needs).
    inputs = tokens[:, :-1]
    attention_mask = torch.cat([prompt_mask[owner], rows["mask"][:, :-1].to(prompt_mask.dtype)], dim=1)
    completion_positions = prompt_mask.sum(1)[owner, None] + torch.arange(width - 1, device=tokens.device)[None]
    rest = model(input_ids=inputs, attention_mask=attention_mask, position_ids=completion_positions,
                 past_key_values=cache, use_cache=True).logits
    return torch.cat([first, rest], dim=1)


def _copy_rows(cache: DynamicCache, owner: torch.Tensor) -> None:
    """Give row ``i`` of every layer's keys and values the prompt ``owner[i]``'s.

    ``index_select``, not ``Cache.batch_select_indices``: the backward of advanced indexing adds the rows'
    gradients atomically across CPU threads, in a different order each run, and a seeded run would no longer
    repeat itself; ``index_select``'s backward adds them in a fixed order.
    """
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, owner)
        layer.values = layer.values.index_select(0, owner)
