"""Combine the named reward terms into the reward RL optimises, and the numbers to log.

    total = w_outcome * outcome + w_calibration * calibration + w_format * format

with the weights and term settings of the ``reward`` config node (``conf/reward/*.yaml``). Every term
is computed and logged as ``reward/<name>`` even at weight 0, so the outcome-only baseline reports the
calibration it does not optimise. Two granularities:

- ``sequence``: one scalar per rollout (GRPO-style estimators; PPO puts it at the last token).
- ``step``: a per-token reward row per rollout: each calibration step's weighted share at its value's
  last token, the other terms at the rollout's last token. A row adds up to the rollout's total, so the
  two granularities give the same return with ``gamma = 1`` and differ only in where credit lands.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from cmt.data.problem import Problem
from cmt.errors import ConfigError
from cmt.rewards.calibration import (
    CALIBRATION_SCORES,
    STEP_AGGREGATIONS,
    JudgedStep,
    calibration_step_term,
    calibration_term,
    judge_rollouts,
)
from cmt.rewards.confidence import CONFIDENCE_KINDS
from cmt.rewards.correctness import CORRECTNESS_MODES
from cmt.rewards.outcome import format_term, outcome_term
from cmt.rewards.steps import EXTRACTIONS
from cmt.rewards.types import Rollout

# A term maps (rollouts, problems, **settings) to one value per rollout.
TermFn = Callable[..., list[float]]
TERMS: dict[str, TermFn] = {"outcome": outcome_term, "calibration": calibration_term, "format": format_term}
# Terms with a per-step form for step granularity: (rollouts, problems, **settings) -> per rollout
# [(token index, share)], the shares adding up to the term's sequence value.
STEP_TERMS: dict[str, Callable[..., list[list[tuple[int, float]]]]] = {"calibration": calibration_step_term}
GRANULARITIES = ("sequence", "step")
_CHOICES = {"granularity": GRANULARITIES, "extraction": EXTRACTIONS, "confidence": CONFIDENCE_KINDS,
            "correctness": CORRECTNESS_MODES, "calibration_score": CALIBRATION_SCORES,
            "step_aggregation": STEP_AGGREGATIONS}


@dataclass(frozen=True)
class RewardConfig:
    """The ``reward`` config node, validated (build it with :meth:`from_mapping`).

    Attributes:
        weights: Term name -> finite weight; terms not named have weight 0.
        granularity: ``sequence`` or ``step``.
        extraction, confidence, correctness, calibration_score, step_aggregation, log_eps: Term
            settings, passed to every term as keywords (see docs/rl.md).
    """

    weights: dict[str, float] = field(default_factory=lambda: {"outcome": 1.0})
    granularity: str = "sequence"
    extraction: str = "flexible"
    confidence: str = "geometric_mean"
    correctness: str = "problem"
    calibration_score: str = "signed"
    step_aggregation: str = "per_gold_step"
    log_eps: float = 0.01

    @classmethod
    def from_mapping(cls, node: Mapping) -> RewardConfig:
        """Validate a ``reward`` config node (a dict or DictConfig; extra keys such as ``name`` ignored).

        Raises:
            ValueError: One line naming the offending key, its value and what is allowed.
        """
        weights_node = node.get("weights")
        if not isinstance(weights_node, Mapping) or not weights_node:
            raise ConfigError(f"reward.weights={weights_node!r}: must map term names ({', '.join(TERMS)}) to weights")
        weights = {}
        for name, weight in weights_node.items():
            if name not in TERMS:
                raise ConfigError(f"reward.weights.{name}: unknown reward term; choose from {', '.join(TERMS)}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ConfigError(f"reward.weights.{name}={weight!r}: must be a finite number")
            weights[str(name)] = float(weight)
        settings = {}
        for key, allowed in _CHOICES.items():
            value = node.get(key, getattr(cls, key))
            if value not in allowed:
                raise ConfigError(f"reward.{key}={value!r}: choose one of {', '.join(allowed)}")
            settings[key] = value
        log_eps = node.get("log_eps", cls.log_eps)
        if isinstance(log_eps, bool) or not isinstance(log_eps, (int, float)) or not 0.0 < log_eps < 0.5:
            raise ConfigError(f"reward.log_eps={log_eps!r}: must be a number in (0, 0.5)")
        return cls(weights=weights, log_eps=float(log_eps), **settings)

    def term_settings(self) -> dict:
        """The keywords every term receives."""
        return {"extraction": self.extraction, "confidence": self.confidence, "correctness": self.correctness,
                "calibration_score": self.calibration_score, "step_aggregation": self.step_aggregation,
                "log_eps": self.log_eps}


@dataclass
class RewardOutput:
    """The rewards of a batch of rollouts.

    Attributes:
        totals: (B,) weighted sum of the terms per rollout (the sequence reward).
        terms: Term name -> (B,) unweighted values.
        placed: Per rollout, ``(token index, reward)`` pairs that add up to its total (step granularity:
            steps at their value's last token, the rest at the last token; sequence: the total at the
            last token).
        lengths: (B,) number of completion tokens per rollout.
        judged: Per rollout, its judged steps (`cmt.rewards.calibration.judge_rollouts`), which the
            calibration term scored; the step calibration RL logs reads them rather than judging again.
    """

    totals: list[float]
    terms: dict[str, list[float]]
    placed: list[list[tuple[int, float]]]
    lengths: list[int]
    judged: list[list[JudgedStep]]

    def scores(self) -> torch.Tensor:
        """(B,) float32 sequence rewards, for group-relative estimators and dynamic sampling."""
        return torch.tensor(self.totals, dtype=torch.float32)

    def token_rewards(self, length: int | None = None) -> torch.Tensor:
        """(B, length) float32 per-token rewards, zero after each rollout's end (GAE's input).

        Args:
            length: Padded width; defaults to the longest rollout.

        Raises:
            ValueError: When ``length`` is shorter than a rollout.
        """
        width = max(self.lengths) if length is None else length
        if width < max(self.lengths):
            raise ValueError(f"length={width} is shorter than the longest rollout ({max(self.lengths)} tokens)")
        rewards = torch.zeros(len(self.totals), width, dtype=torch.float32)
        for row, pairs in enumerate(self.placed):
            for index, value in pairs:
                rewards[row, index] += value
        return rewards

    def metrics(self) -> dict[str, float]:
        """Batch means for logging: ``reward/<term>`` for every term, and ``reward/total``."""
        n = len(self.totals)
        out = {f"reward/{name}": sum(values) / n for name, values in self.terms.items()}
        out["reward/total"] = sum(self.totals) / n
        return out


def compute_rewards(rollouts: Sequence[Rollout], problems: Sequence[Problem], config: RewardConfig) -> RewardOutput:
    """Score a batch of rollouts with every term and combine them by weight.

    Args:
        rollouts: (B) completions; ``problems[r.problem_index]`` is the problem of ``r``.
        problems: The problems of the batch.
        config: Validated reward settings.

    Returns:
        Totals, per-term values, per-token placement and lengths (:class:`RewardOutput`).

    Raises:
        ValueError: For an empty batch.
    """
    if not rollouts:
        raise ValueError("cannot compute rewards of an empty batch of rollouts")
    settings = config.term_settings()
    # Every rollout's steps are judged once, here, for every term and for the logged step calibration.
    settings["judged"] = judge_rollouts(rollouts, problems, **settings)
    by_step = ({name: fn(rollouts, problems, **settings) for name, fn in STEP_TERMS.items()}
               if config.granularity == "step" else {})
    terms = {name: [sum(share for _, share in row) for row in by_step[name]] if name in by_step
             else fn(rollouts, problems, **settings) for name, fn in TERMS.items()}
    totals = [sum(config.weights.get(name, 0.0) * terms[name][i] for name in TERMS) for i in range(len(rollouts))]
    last = [len(r.token_ids) - 1 for r in rollouts]
    if config.granularity == "sequence":
        placed = [[(last[i], totals[i])] for i in range(len(rollouts))]
    else:
        placed = [[] for _ in rollouts]
        for name in TERMS:
            weight = config.weights.get(name, 0.0)
            for row in range(len(rollouts)):
                pairs = by_step[name][row] if name in by_step else [(last[row], terms[name][row])]
                placed[row].extend((index, weight * value) for index, value in pairs)
    return RewardOutput(totals, terms, placed, [len(r.token_ids) for r in rollouts], settings["judged"])
