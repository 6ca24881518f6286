"""Policy, value and KL losses on padded (B, T) tensors, with small registries for the named choices.

- Policy loss ``ppo_clip``: the PPO clipped surrogate with separate lower and upper clip ranges
  (``clip_high > clip_low`` is DAPO's clip-higher, which leaves low-probability tokens room to grow).
- Aggregation of per-token losses to a scalar (:data:`AGGREGATIONS`):
  ``token_mean`` (every token weighs the same; DAPO), ``sequence_mean`` (mean over sequences of the
  per-sequence token mean; GRPO), ``sequence_sum_norm`` (per-sequence token sum divided by a constant
  ``max_length``, then mean over sequences; Dr. GRPO, free of the length bias of ``sequence_mean``).
- Value loss: the critic's squared error, clipped around the values at rollout time.
- KL penalty to a reference policy, per token (:data:`KL_ESTIMATORS`): ``k1`` = log ratio (unbiased,
  any sign; the usual per-token reward penalty) and ``k3`` = ``exp(-x) + x - 1`` with ``x`` the log ratio
  clamped to ±:data:`K3_MAX_LOG_RATIO` (non-negative, low variance; the usual loss penalty).

Gradient accumulation: a mini-batch split into micro-batches gives the same gradient as one pass when
each micro-batch's loss is aggregated with the mini-batch's ``num_tokens``/``num_sequences`` and the
micro-batch losses are summed (not averaged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cmt.rl.masked import masked_mean, masked_sum

AGGREGATIONS = ("token_mean", "sequence_mean", "sequence_sum_norm")
# Bound on |log ratio| before exponentiating, so a far-off token cannot overflow the loss.
_MAX_LOG_RATIO = 20.0
# Bound on |log ratio| inside k3. k3 grows like exp(-x) where the policy gives a sampled token far less
# probability than the reference (x << 0): at the general bound of 20 one token could add 4.9e8 to the loss
# (7,631 was seen at a high learning rate), and its gradient 1 - exp(-x) as much. At 5 a token adds at most
# e^5 - 6 = 142 (a probability 148 times below the reference's); beyond that it adds no more and no gradient.
K3_MAX_LOG_RATIO = 5.0


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, *, max_length: int | None = None,
              num_tokens: float | None = None, num_sequences: float | None = None) -> torch.Tensor:
    """Reduce a (B, T) per-token loss to a scalar.

    Args:
        per_token: (B, T) loss per token.
        mask: (B, T) 1 on tokens that count.
        mode: ``token_mean``, ``sequence_mean`` or ``sequence_sum_norm``.
        max_length: The constant divisor of ``sequence_sum_norm`` (the generation limit, max_new_tokens).
        num_tokens: Divisor of ``token_mean``; default: this batch's mask sum. Pass the mini-batch's
            count when accumulating over micro-batches.
        num_sequences: Divisor of the sequence modes; default B. Same remark.

    Raises:
        ValueError: For an unknown mode, or ``sequence_sum_norm`` without a positive ``max_length``.
    """
    mask = mask.to(per_token.dtype)
    if mode == "token_mean":
        return masked_sum(per_token, mask) / (mask.sum().clamp(min=1.0) if num_tokens is None else num_tokens)
    sequences = per_token.shape[0] if num_sequences is None else num_sequences
    if mode == "sequence_mean":
        return masked_mean(per_token, mask, dim=1).sum() / sequences
    if mode == "sequence_sum_norm":
        if not max_length or max_length <= 0:
            raise ValueError(f"sequence_sum_norm needs a positive max_length, got {max_length!r}")
        return masked_sum(per_token, mask) / (sequences * max_length)
    raise ValueError(f"unknown loss aggregation {mode!r}; choose one of {', '.join(AGGREGATIONS)}")


def ppo_clip(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, *, clip_low: float,
             clip_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO clipped surrogate loss.

    ``loss_t = -min(r_t A_t, clip(r_t, 1 - clip_low, 1 + clip_high) A_t)`` with ``r_t = exp(logp - old)``.

    Args:
        logprobs: (B, T) log-probs of the taken tokens under the current policy (with gradient).
        old_logprobs: (B, T) the same under the policy that sampled them (no gradient).
        advantages: (B, T).
        clip_low, clip_high: The ratio is clipped to [1 - clip_low, 1 + clip_high].

    Returns:
        (loss, clipped): (B, T) per-token loss, and (B, T) bool, True where the clipped term was chosen
        (the token's gradient is zero).
    """
    log_ratio = (logprobs - old_logprobs).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages
    return -torch.minimum(unclipped, clipped), clipped < unclipped


PolicyLossFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]
POLICY_LOSSES: dict[str, PolicyLossFn] = {"ppo_clip": ppo_clip}


@dataclass(frozen=True)
class PolicyLoss:
    """A policy loss and its diagnostics (detached scalars).

    Attributes:
        loss: Scalar to backpropagate.
        clip_fraction: Fraction of valid tokens whose clipped term was chosen.
        approx_kl: ``k3`` estimate of KL(old policy || current policy) over the valid tokens.
    """

    loss: torch.Tensor
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor


def policy_loss(name: str, logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, *, clip_low: float, clip_high: float, aggregation: str,
                max_length: int | None = None, num_tokens: float | None = None,
                num_sequences: float | None = None, token_weights: torch.Tensor | None = None) -> PolicyLoss:
    """The aggregated policy loss ``name`` (a key of :data:`POLICY_LOSSES`) and its diagnostics.

    Args:
        name: Policy loss name.
        logprobs, old_logprobs, advantages, mask: (B, T); see :func:`ppo_clip`.
        clip_low, clip_high: Ratio clip range.
        aggregation, max_length, num_tokens, num_sequences: See :func:`aggregate`.
        token_weights: (B, T) weights of each token's loss (the truncated importance weights of rollouts
            drawn by another engine, `cmt.rl.vllm_rollouts`); None: all 1.

    Raises:
        ValueError: For an unknown name or aggregation.
    """
    if name not in POLICY_LOSSES:
        raise ValueError(f"unknown policy loss {name!r}; choose one of {', '.join(POLICY_LOSSES)}")
    per_token, clipped = POLICY_LOSSES[name](logprobs, old_logprobs, advantages,
                                             clip_low=clip_low, clip_high=clip_high)
    if token_weights is not None:
        per_token = per_token * token_weights
    loss = aggregate(per_token, mask, aggregation, max_length=max_length, num_tokens=num_tokens,
                     num_sequences=num_sequences)
    with torch.no_grad():
        mask = mask.to(per_token.dtype)
        clip_fraction = masked_mean(clipped.to(per_token.dtype), mask)
        approx_kl = masked_mean(kl_penalty(old_logprobs, logprobs, "k3"), mask)
    return PolicyLoss(loss, clip_fraction, approx_kl)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, *,
               clip: float, aggregation: str = "token_mean", num_tokens: float | None = None,
               num_sequences: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped critic loss: ``0.5 * max((V - R)^2, (V_clip - R)^2)``, ``V_clip = V_old + clip(V - V_old, ±clip)``.

    Args:
        values: (B, T) current critic values (with gradient).
        old_values: (B, T) critic values at rollout time.
        returns: (B, T) regression targets (``Advantages.returns``).
        mask: (B, T).
        clip: Largest change of a value from ``old_values`` that still reduces the loss.
        aggregation, num_tokens, num_sequences: See :func:`aggregate` (``sequence_sum_norm`` is not
            meaningful for a critic).

    Returns:
        (loss, clip_fraction): the scalar loss and the detached fraction of tokens where the clipped
        error was the larger.
    """
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = aggregate(0.5 * torch.maximum(error, clipped_error), mask, aggregation, num_tokens=num_tokens,
                     num_sequences=num_sequences)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped_error > error).to(values.dtype), mask.to(values.dtype))
    return loss, clip_fraction


def _k1(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio


def _k3(log_ratio: torch.Tensor) -> torch.Tensor:
    log_ratio = log_ratio.clamp(-K3_MAX_LOG_RATIO, K3_MAX_LOG_RATIO)
    return torch.exp(-log_ratio) + log_ratio - 1.0


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"k1": _k1, "k3": _k3}


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from tokens sampled by the policy.

    With ``x = logprobs - ref_logprobs`` (clamped to ±20): ``k1 = x``; ``k3 = exp(-x) + x - 1`` with ``x``
    clamped further, to ±:data:`K3_MAX_LOG_RATIO` (so k3 <= e^5 - 6 per token).

    Args:
        logprobs: (B, T) log-probs of the sampled tokens under the policy.
        ref_logprobs: (B, T) the same under the reference model.
        estimator: ``k1`` or ``k3``.

    Returns:
        (B, T) per-token penalty (mask it before use).

    Raises:
        ValueError: For an unknown estimator.
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {', '.join(KL_ESTIMATORS)}")
    return KL_ESTIMATORS[estimator]((logprobs - ref_logprobs).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO))
