"""Reductions over the valid (mask = 1) positions of padded (B, T) tensors."""

from __future__ import annotations

import torch


def completion_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) float mask, 1 on the first ``lengths[b]`` positions of row ``b`` (right padding)."""
    return (torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]).float()


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``values`` where ``mask`` is 1 (over ``dim``, or everything)."""
    masked = values * mask
    return masked.sum() if dim is None else masked.sum(dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1; 0 where the mask is empty."""
    return masked_sum(values, mask, dim) / masked_sum(torch.ones_like(values), mask, dim).clamp(min=1.0)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Shift and scale the valid entries to mean 0 and (population) std 1; padding becomes 0."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(variance + eps) * mask


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(targets - predictions) / Var(targets)`` over the valid entries: how much of the targets'
    variance the predictions explain (1: all; 0: no better than a constant; negative: worse). NaN when the
    targets do not vary.

    The PPO critic's diagnostic: its values at rollout time against the returns GAE made from them.
    """
    mask = mask.to(targets.dtype)
    spread = masked_mean((targets - masked_mean(targets, mask)) ** 2, mask)
    if float(spread) == 0.0:
        return float("nan")
    residual = targets - predictions
    return float(1.0 - masked_mean((residual - masked_mean(residual, mask)) ** 2, mask) / spread)
