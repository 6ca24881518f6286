"""Log-probs of rollouts' completions under a model, with each prompt run through it once per group.

The rollouts of one RL step come in groups that share a prompt (``group_size`` completions per problem). A
forward pass over ``[prompt | completion]`` rows computes every prompt ``group_size`` times; here the
prompts of a micro-batch go through the model once, their KV cache is copied to the rows that continue
them, and the completions run on top of it. The logits are the same (exactly so with eager attention) and
gradients flow back through the copied cache into the prompt's single pass, so the policy's update and the
reference's scoring pay for a prompt once per micro-batch instead of once per rollout (the PPO critic still
reads whole rows). With ``chunk_tokens`` set, the log-probs come from the last hidden states of the
completion tokens through a chunked LM head (`cmt.lm_head`), never from the logits of every position.

Activation checkpointing re-runs each layer in the backward pass, and transformers drops the KV cache of a
checkpointed model in training mode; such a model gets the plain ``[prompt | completion]`` pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import DynamicCache

from cmt.generation import positions
from cmt.lm_head import chosen_logprobs, entropy_from_logits, split_head, token_logprobs

# Runs a model on keyword inputs and returns its per-position outputs, the last ``keep`` positions (0: all).
Run = Callable[..., torch.Tensor]


def completion_logprobs(model: torch.nn.Module, rows: dict[str, torch.Tensor], temperature: float = 1.0,
                        chunk_tokens: int | None = None, entropy: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, T) log-probs of ``rows["tokens"]`` under ``model`` and, when asked, the entropies of the completion
    tokens' distributions ((N,) over ``rows["mask"]``, no gradient).

    With ``chunk_tokens`` None the log-probs come from ``model``'s logits of every completion column; else
    from its last hidden states at the completion tokens only, projected by the LM head ``chunk_tokens``
    tokens at a time (`cmt.lm_head`: a real vocabulary's logits never exist at once). Values past a row's
    end differ between the two (callers mask them).

    Args:
        model: A causal LM (PEFT-wrapped or not).
        rows: A micro-batch as ``cmt.rl.batch.Batch.rows`` cuts it (see :func:`completion_logits`).
        temperature: The sampling temperature (PPO's old and new log-probs share a distribution).
    """
    mask = rows["mask"].bool()
    if chunk_tokens is None:
        logits = completion_logits(model, rows)
        with torch.no_grad():
            entropies = entropy_from_logits(logits[mask]) if entropy else None
        return token_logprobs(logits, rows["tokens"], temperature), entropies
    decoder, head = split_head(model)
    hidden = _states(_hidden_states(decoder), rows, decoder)
    chosen, entropies = chosen_logprobs(head, hidden[mask], rows["tokens"][mask], temperature, chunk_tokens,
                                        entropy)
    return chosen.new_zeros(mask.shape).masked_scatter(mask, chosen), entropies


def completion_logits(model: torch.nn.Module, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, T, V) logits whose position ``t`` predicts ``rows["tokens"][:, t]``.

    Args:
        model: A causal LM (PEFT-wrapped or not).
        rows: A micro-batch as ``cmt.rl.batch.Batch.rows`` cuts it: ``input_ids``/``attention_mask``/
            ``position_ids`` over ``[prompt | completion]``, ``tokens`` (B, T), ``prompt_ids``/``prompt_mask``
            (U, P) of the distinct prompts and ``owner`` (B,), each row's prompt among them.
    """
    return _states(_logits(model), rows, model)


def _logits(model: torch.nn.Module) -> Run:
    """A causal LM's logits, of the last ``keep`` positions only (transformers' ``logits_to_keep``)."""
    return lambda keep, **inputs: model(**inputs, logits_to_keep=keep).logits


def _hidden_states(decoder: torch.nn.Module) -> Run:
    """A decoder's last hidden states (after its final norm: what the LM head projects)."""
    def run(keep: int, **inputs) -> torch.Tensor:
        states = decoder(**inputs).last_hidden_state
        return states[:, -keep:] if keep else states
    return run


def _states(run: Run, rows: dict[str, torch.Tensor], model: torch.nn.Module) -> torch.Tensor:
    """(B, T, D) outputs of ``run`` (logits or hidden states) at the positions that predict the completion tokens."""
    if model.training and _checkpointed(model):
        return _full_rows(run, rows)
    return _prompts_once(run, rows)


def _checkpointed(model: torch.nn.Module) -> bool:
    """Whether any layer re-runs in the backward pass (the flag transformers' checkpointed layers read)."""
    return any(getattr(module, "gradient_checkpointing", False) for module in model.modules())


def _full_rows(run: Run, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """One pass over every row's ``[prompt | completion]``."""
    width = rows["tokens"].shape[1]
    return run(width + 1, input_ids=rows["input_ids"], attention_mask=rows["attention_mask"],
               position_ids=rows["position_ids"])[:, :-1]


def _prompts_once(run: Run, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """One pass over the distinct prompts, then one over the completions on their copied KV cache."""
    prompt_mask, owner, tokens = rows["prompt_mask"], rows["owner"], rows["tokens"]
    cache = DynamicCache()
    prompt_out = run(1, input_ids=rows["prompt_ids"], attention_mask=prompt_mask,
                     position_ids=positions(prompt_mask), past_key_values=cache, use_cache=True)
    # The last prompt position predicts the first completion token.
    first = prompt_out.index_select(0, owner)
    width = tokens.shape[1]
    if width == 1:
        return first
    _copy_rows(cache, owner)
    # Every completion token but the last is an input (the last one predicts nothing the loss needs).
    inputs = tokens[:, :-1]
    attention_mask = torch.cat([prompt_mask[owner], rows["mask"][:, :-1].to(prompt_mask.dtype)], dim=1)
    completion_positions = prompt_mask.sum(1)[owner, None] + torch.arange(width - 1, device=tokens.device)[None]
    rest = run(0, input_ids=inputs, attention_mask=attention_mask, position_ids=completion_positions,
               past_key_values=cache, use_cache=True)
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
