"""From a forward pass's logits to what the losses and logs need: chosen-token log-probs and entropy."""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of each chosen token.

    Args:
        logits: (B, T, V) logits whose position ``t`` predicts ``tokens[:, t]`` (already shifted).
        tokens: (B, T) token ids.
        temperature: Divide the logits by it first; use the sampling temperature so that old and new
            log-probs of PPO's ratio come from the same distribution.

    Returns:
        (B, T) float32 log-probs (``logit[token] - logsumexp(logits)``, without a (B, T, V) softmax copy).
    """
    logits = logits.float()
    if temperature != 1.0:
        # Skipped at 1.0: the division would copy the (B, T, V) logits (and keep the copy for backward).
        logits = logits / temperature
    chosen = logits.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    return chosen - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(B, T) entropy of each position's distribution: ``logsumexp(l) - sum softmax(l) * l``, in nats."""
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(-1)
