"""From a causal LM's outputs to the log-probability of chosen tokens, with the LM head run in chunks.

A training forward through ``model(...)`` materialises the logits of every position, and the loss then
upcasts them to float32 and keeps a softmax-sized tensor for the backward pass. With a real vocabulary
these are the largest activations of a step: 16 rows x 1,024 tokens x 151,936 ids in float32 is 10 GB
a copy, several times what the layers of a checkpointed 7B model keep. :func:`chosen_logprobs` instead
projects the last hidden states of the scored positions only (SFT targets, RL completion tokens; never
padding or prompts) ``chunk_tokens`` at a time, keeps each position's chosen-token log-probability (and,
when asked, its entropy) and lets the chunk's logits go; the backward pass projects the chunk again
(``torch.utils.checkpoint``). At most one chunk's logits exist at once, for one more pass of the head per
chunk: the head's share of the model's FLOPs, a few percent of a 4-8B model's step (perf/README.md has
measurements). A call whose positions fit in one chunk, or that needs no gradient, projects once.

This needs logits that are exactly ``lm_head(final hidden states)``, which holds for the architectures in
:data:`PLAIN_HEAD_TYPES` (others soft-cap or scale their logits); :func:`split_head` refuses the rest.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from cmt.errors import CmtError

# model_type of the causal LMs whose logits are ``lm_head(model(...).last_hidden_state)``, unscaled (checked
# in transformers' modeling code). Gemma 2/3 soft-cap their logits and Cohere/Granite scale them.
PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of each chosen token.

    Args:
        logits: (..., V) logits whose position predicts the ``tokens`` entry at the same index (already shifted).
        tokens: (...) token ids.
        temperature: Divide the logits by it first; use the sampling temperature so that old and new
            log-probs of PPO's ratio come from the same distribution.

    Returns:
        (...) float32 log-probs (``logit[token] - logsumexp(logits)``, without a softmax-sized copy).
    """
    logits = logits.float()
    if temperature != 1.0:
        # Skipped at 1.0: the division would copy the logits (and keep the copy for backward).
        logits = logits / temperature
    chosen = logits.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    return chosen - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(...) entropy of each position's distribution: ``logsumexp(l) - sum softmax(l) * l``, in nats."""
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(-1)


class UnsupportedHeadError(CmtError, ValueError):
    """Chunked log-probs were asked of a model whose logits are not a plain projection of its hidden states."""


def split_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(decoder, head) of a causal LM (PEFT-wrapped or not) whose logits are ``head(decoder(...).last_hidden_state)``.

    Calling the decoder and head directly keeps LoRA layers (and ``disable_adapter``) in effect: PEFT
    injects them into the modules themselves.

    Raises:
        UnsupportedHeadError: For an architecture outside :data:`PLAIN_HEAD_TYPES`, naming the setting to change.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in PLAIN_HEAD_TYPES:
        raise UnsupportedHeadError(
            f"model.logits_chunk_tokens needs logits that are lm_head(hidden states) "
            f"({', '.join(sorted(PLAIN_HEAD_TYPES))}); a {model_type} model is not one: "
            f"set model.logits_chunk_tokens=null")
    return model.get_decoder(), model.get_output_embeddings()


def chosen_logprobs(head: torch.nn.Module, hidden: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0,
                    chunk_tokens: int | None = None, entropy: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of ``tokens`` under ``head(hidden)``, projecting ``chunk_tokens`` positions at a time.

    Args:
        head: The LM head (hidden size -> vocabulary).
        hidden: (N, H) last hidden states, row ``i`` predicting ``tokens[i]``.
        tokens: (N,) token ids.
        temperature: As in :func:`token_logprobs`.
        chunk_tokens: Positions per projection (None: all at once).
        entropy: Also return the entropy of each position's distribution at temperature 1 (no gradient; a
            training diagnostic).

    Returns:
        (N,) float32 log-probs, and (N,) entropies or None.
    """
    size = max(len(tokens) if chunk_tokens is None else int(chunk_tokens), 1)
    recompute = hidden.requires_grad and torch.is_grad_enabled() and len(tokens) > size
    logprobs, entropies = [], []
    for start in range(0, len(tokens), size):
        part = (head, hidden[start:start + size], tokens[start:start + size], temperature, entropy)
        chunk_logprobs, chunk_entropies = checkpoint(_chunk, *part, use_reentrant=False) if recompute else _chunk(*part)
        logprobs.append(chunk_logprobs)
        entropies.append(chunk_entropies)
    if not logprobs:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty if entropy else None
    return torch.cat(logprobs), torch.cat(entropies) if entropy else None


def _chunk(head: torch.nn.Module, hidden: torch.Tensor, tokens: torch.Tensor, temperature: float,
           entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One chunk's log-probs (and entropies, without gradient) from its freshly projected logits."""
    logits = head(hidden)
    logprobs = token_logprobs(logits, tokens, temperature)
    if not entropy:
        return logprobs, None
    with torch.no_grad():
        return logprobs, entropy_from_logits(logits)
