"""DAPO's dynamic sampling: keep only prompt groups whose rewards vary.

A group whose rollouts all earn the same reward (all right, or all wrong) has zero group-relative
advantage, so it adds no gradient but still dilutes the batch. DAPO drops such groups and samples more
prompts until the batch is full again; this module decides what to drop, the caller refills.
"""

from __future__ import annotations

import torch


def varied_groups(scores: torch.Tensor, group_size: int, tolerance: float = 0.0) -> torch.Tensor:
    """(B,) bool: True for every rollout of a group whose rewards span more than ``tolerance``.

    Args:
        scores: (B,) sequence rewards, groups of ``group_size`` adjacent (see cmt.rl.advantages).
        group_size: Rollouts per prompt.
        tolerance: Spreads (max - min) at or below this count as constant; 0 is exact equality. The
            calibration term makes rewards continuous, so a small tolerance can drop groups that differ
            only by noise-level confidence.

    Raises:
        ValueError: When B is not a multiple of ``group_size``.
    """
    if scores.shape[0] % group_size:
        raise ValueError(f"{scores.shape[0]} rollouts do not split into groups of {group_size}")
    groups = scores.view(-1, group_size)
    spread = groups.max(dim=1).values - groups.min(dim=1).values
    return (spread > tolerance).repeat_interleave(group_size)
