"""Advantage estimators: a small registry, name -> function of one :class:`AdvantageInputs`.

- ``gae`` (PPO): generalised advantage estimation from per-token rewards and a critic's values;
  also returns the critic's regression targets.
- ``grpo``: group-relative. Each prompt's ``group_size`` rollouts are compared with each other:
  advantage = reward - group mean, scaled by the group's std (GRPO), the batch's std, the group's std of
  the *outcome* term alone (``outcome``, CCRL's default), or not at all (Dr. GRPO), then given to every
  token of the rollout. No critic.

Why ``outcome``: CCRL's reward is continuous (outcome + calibration). In a group whose answers are all
right or all wrong, the rewards differ only by small confidence differences; dividing by that group's own
std blows them up to full-size advantages (+-1), as large as the difference between a right and a wrong
answer elsewhere, so calibration noise would dominate the update. Dividing by the spread of the outcomes
keeps a mixed group's advantages at GRPO's size, and leaves an agreeing group's calibration differences
at their own (small) size: they refine the update instead of dominating it.

Layout: rollouts of one prompt are adjacent, ``group_size`` of them, so row ``i`` is in group
``i // group_size`` (``prompts.repeat_interleave(group_size)``). Masks are 1 on each rollout's completion
tokens, which start at position 0 (right padding). Every function runs without gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cmt.rl.masked import masked_sum, masked_whiten

GROUP_SCALES = ("group", "batch", "none", "outcome")
# ``outcome`` scale of a group whose outcomes all agree (their std is 0): the outcome term's unit, one
# answer right against wrong. A mixed group of 8 has an outcome std of 0.35-0.53, so an agreeing group's
# calibration differences are scaled like a mixed group's, never up.
OUTCOME_SCALE_FALLBACK = 1.0


@dataclass(frozen=True)
class AdvantageInputs:
    """What the estimators read; each reads only its own fields.

    Attributes:
        token_rewards: (B, T) per-token rewards (``RewardOutput.token_rewards``, minus any KL penalty).
        mask: (B, T) 1 on completion tokens.
        values: (B, T) critic values at each token (``gae`` only).
        gamma, lam: Discount and GAE lambda (``gae`` only).
        whiten: Normalise GAE advantages to mean 0, std 1 over the batch's tokens (``gae`` only).
        group_size: Rollouts per prompt (``grpo`` only).
        scale: ``group`` | ``batch`` | ``none`` | ``outcome`` (``grpo`` only).
        outcomes: (B,) the outcome term of each rollout (``RewardOutput.terms["outcome"]``; ``outcome``
            scale only).
        eps: Added to a std before dividing by it.
    """

    token_rewards: torch.Tensor
    mask: torch.Tensor
    values: torch.Tensor | None = None
    gamma: float = 1.0
    lam: float = 0.95
    whiten: bool = True
    group_size: int = 1
    scale: str = "group"
    outcomes: torch.Tensor | None = None
    eps: float = 1e-6


@dataclass(frozen=True)
class Advantages:
    """Estimator output: (B, T) advantages (0 on padding) and (B, T) critic targets (None without critic)."""

    advantages: torch.Tensor
    returns: torch.Tensor | None


@torch.no_grad()
def gae(token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded completions.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` (``V`` after the last token is 0: the end of a completion
    is terminal) and ``A_t = delta_t + gamma * lam * A_{t+1}``.

    Args:
        token_rewards, values, mask: (B, T).
        gamma: Discount in [0, 1].
        lam: GAE lambda in [0, 1] (1: Monte-Carlo returns minus values, 0: one-step TD).

    Returns:
        (advantages, returns), both (B, T) and 0 on padding; returns = advantages + values.
    """
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    next_value = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
        next_value = values[:, t] * mask[:, t]
    return advantages, (advantages + values) * mask


@torch.no_grad()
def group_relative(scores: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-6,
                   outcomes: torch.Tensor | None = None) -> torch.Tensor:
    """Per-rollout group-relative advantages.

    Args:
        scores: (B,) sequence rewards, groups adjacent; B a multiple of ``group_size``.
        group_size: Rollouts per prompt (>= 2 for a non-trivial baseline).
        scale: ``group``: divide by the group's std (sample std, Bessel-corrected); ``batch``: by the
            std of all B rewards; ``none``: no division (Dr. GRPO, unbiased); ``outcome``: by the group's
            sample std of ``outcomes``, or :data:`OUTCOME_SCALE_FALLBACK` where they all agree.
        eps: Added to the std.
        outcomes: (B,) outcome terms (``outcome`` scale only).

    Returns:
        (B,) advantages. Rows of a group whose rewards are all equal get exactly 0 (nothing to learn).

    Raises:
        ValueError: When B is not a multiple of ``group_size``, ``scale`` is unknown, or ``outcome`` scale
            lacks ``outcomes``.
    """
    if scores.shape[0] % group_size:
        raise ValueError(f"{scores.shape[0]} rollouts do not split into groups of {group_size}")
    if scale not in GROUP_SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; choose one of {', '.join(GROUP_SCALES)}")
    groups = scores.float().view(-1, group_size)
    advantages = groups - groups.mean(dim=1, keepdim=True)
    if scale == "group" and group_size > 1:
        advantages = advantages / (groups.std(dim=1, keepdim=True) + eps)
    elif scale == "batch" and scores.numel() > 1:
        advantages = advantages / (scores.float().std() + eps)
    elif scale == "outcome" and group_size > 1:
        if outcomes is None or outcomes.shape != scores.shape:
            raise ValueError("the outcome advantage scale needs each rollout's outcome term")
        spread = outcomes.to(scores.device).float().view(-1, group_size).std(dim=1, keepdim=True)
        advantages = advantages / (torch.where(spread > 0, spread, torch.full_like(spread, OUTCOME_SCALE_FALLBACK))
                                   + eps)
    constant = (groups.max(dim=1).values == groups.min(dim=1).values)[:, None]
    return torch.where(constant, torch.zeros_like(advantages), advantages).reshape(-1)


def _gae_estimator(inputs: AdvantageInputs) -> Advantages:
    if inputs.values is None:
        raise ValueError("the gae estimator needs critic values")
    advantages, returns = gae(inputs.token_rewards, inputs.values, inputs.mask, inputs.gamma, inputs.lam)
    if inputs.whiten:
        advantages = masked_whiten(advantages, inputs.mask.to(advantages.dtype))
    return Advantages(advantages, returns)


def _grpo_estimator(inputs: AdvantageInputs) -> Advantages:
    mask = inputs.mask.to(inputs.token_rewards.dtype)
    scores = masked_sum(inputs.token_rewards, mask, dim=1)
    per_rollout = group_relative(scores, inputs.group_size, inputs.scale, inputs.eps, inputs.outcomes)
    return Advantages(per_rollout[:, None] * mask, None)


ESTIMATORS: dict[str, Callable[[AdvantageInputs], Advantages]] = {"gae": _gae_estimator, "grpo": _grpo_estimator}


def compute_advantages(name: str, inputs: AdvantageInputs) -> Advantages:
    """Run the estimator ``name`` (a key of :data:`ESTIMATORS`) on ``inputs``.

    Raises:
        ValueError: For an unknown name, or inputs the estimator cannot use.
    """
    if name not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](inputs)


def agreeing_groups(outcomes: torch.Tensor, group_size: int) -> float:
    """The fraction of groups whose rollouts all have the same outcome (all right or all wrong).

    Such a group carries no right-against-wrong signal: under an outcome-only reward its advantages are 0,
    under CCRL only calibration differences remain. (With a continuous reward, the rewards themselves almost
    never agree exactly, so counting groups of equal rewards would report none.)
    """
    groups = outcomes.float().view(-1, group_size)
    return float((groups.max(dim=1).values == groups.min(dim=1).values).float().mean())
