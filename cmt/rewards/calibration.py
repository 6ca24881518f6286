"""The calibration reward: score the policy's confidence in each judged step against its correctness.

For a step with confidence ``c`` in [0, 1] and correctness ``y`` in {0, 1} (``reward.calibration_score``):

- ``signed`` (default): ``+c`` if right, ``-c`` if wrong. The literal reading of the paper's description
  (reward confident correct steps, penalise confident wrong ones); range [-1, 1]. It is not a proper
  scoring rule: it pushes confidence to 1 on steps the policy gets right more often than not, to 0 on
  the others.
- ``brier``: ``1 - (c - y)^2``; range [0, 1]. A proper scoring rule: maximal in expectation when ``c``
  equals the probability of being right.
- ``log``: ``y log c + (1 - y) log(1 - c)`` with ``c`` clipped to [eps, 1 - eps]; range [log eps, 0].
  Proper, and harsher than Brier on confident mistakes.

A rollout that gives no final answer (none can be extracted; for a truncated rollout, no answer sentence)
is scored as if it had answered wrongly at full confidence: one more step with ``c = 1`` and ``y = 0``,
placed at its last token. So leaving the answer out never scores above stating a wrong one, under any
score and aggregation: ``-1`` is the lowest signed score, ``0`` the lowest Brier score and ``log eps`` the
lowest log score.

The step scores of a rollout are reduced to one number (``reward.step_aggregation``):

- ``per_gold_step`` (default): the sum of the scores divided by the number of steps of the gold solution
  plus one (the answer), ``1 + len(problem.intermediate)``, and kept within the score's range. The divisor
  is the problem's, not the rollout's, so writing more steps cannot dilute the score of a confident wrong
  answer: a step whose score is at most 0 (every wrong step under ``signed`` and ``log``) never raises the
  term. On problems without gold intermediate values the divisor is one plus the number of the rollout's
  steps judged *right*: wrong steps still cannot dilute the answer, and right ones (which the dataflow
  check credits only on the way to a right answer: :mod:`cmt.rewards.correctness`) share the weight with
  it as gold steps do.
- ``mean`` (the same scale however many steps a rollout writes; but doubtful extra steps dilute the
  others, so it can be raised by writing wrong steps at low confidence), ``min`` (the worst step) or
  ``sum`` (more steps, more weight).

In step granularity each step's share is placed at the step's last token, so the shares always add up to
the sequence value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cmt.data.problem import Problem
from cmt.rewards.confidence import step_confidence
from cmt.rewards.correctness import step_correctness
from cmt.rewards.outcome import answer_correct, rollout_extraction
from cmt.rewards.steps import Step, find_steps
from cmt.rewards.types import Rollout

CALIBRATION_SCORES = ("signed", "brier", "log")
STEP_AGGREGATIONS = ("per_gold_step", "mean", "min", "sum")


@dataclass(frozen=True)
class JudgedStep:
    """A step with the policy's confidence in it and its correctness."""

    step: Step
    confidence: float
    correct: bool


def judge_steps(rollout: Rollout, problem: Problem, *, extraction: str = "flexible",
                confidence: str = "geometric_mean", correctness: str = "problem") -> list[JudgedStep]:
    """Find, score and judge a rollout's steps; steps that are not judged are left out.

    Args:
        rollout: One completion with per-token log-probs and offsets.
        problem: The problem it answers.
        extraction: Final-answer extraction (``flexible`` | ``strict``); a truncated rollout is read strictly
            (:func:`cmt.rewards.outcome.rollout_extraction`).
        confidence: Confidence kind (:data:`cmt.rewards.confidence.CONFIDENCE_KINDS`).
        correctness: Correctness mode (:data:`cmt.rewards.correctness.CORRECTNESS_MODES`).
    """
    steps = find_steps(rollout.text, rollout.offsets, rollout_extraction(rollout, extraction))
    verdicts = step_correctness(steps, problem, answer_correct(rollout, problem, extraction), correctness)
    return [JudgedStep(step, step_confidence(rollout.logprobs, step.token_indices, confidence), verdict)
            for step, verdict in zip(steps, verdicts, strict=True) if verdict is not None]


def judge_rollouts(rollouts: Sequence[Rollout], problems: Sequence[Problem], *, extraction: str = "flexible",
                   confidence: str = "geometric_mean", correctness: str = "problem", **_settings
                   ) -> list[list[JudgedStep]]:
    """:func:`judge_steps` of every rollout (``problems[r.problem_index]`` is the problem of ``r``): the
    judgment a batch's calibration reward and its logged step calibration share, made once."""
    return [judge_steps(r, problems[r.problem_index], extraction=extraction, confidence=confidence,
                        correctness=correctness) for r in rollouts]


def step_score(confidence: float, correct: bool, score: str = "signed", log_eps: float = 0.01) -> float:
    """The calibration score of one step (formulas in the module docstring).

    Raises:
        ValueError: For an unknown score.
    """
    y = 1.0 if correct else 0.0
    if score == "signed":
        return confidence if correct else -confidence
    if score == "brier":
        return 1.0 - (confidence - y) ** 2
    if score == "log":
        c = min(max(confidence, log_eps), 1.0 - log_eps)
        return math.log(c) if correct else math.log(1.0 - c)
    raise ValueError(f"unknown calibration score {score!r}; choose one of {', '.join(CALIBRATION_SCORES)}")


def step_shares(scores: Sequence[float], aggregation: str = "mean", expected_steps: int = 0,
                bounds: tuple[float, float] = (-math.inf, math.inf)) -> list[float]:
    """Each step's share of the aggregated score; the shares add up to the aggregate.

    ``mean``: score / n each. ``sum``: the scores. ``min``: the (first) lowest score, 0 for the others.
    ``per_gold_step``: score / (1 + ``expected_steps``) each, scaled down together when their sum leaves
    ``bounds`` (the score's range).

    Args:
        scores: The step scores of one rollout, the answer's included.
        aggregation: One of :data:`STEP_AGGREGATIONS`.
        expected_steps: For ``per_gold_step``: the intermediate steps the score is shared with (the module
            docstring says which).
        bounds: The score's range (:func:`score_range`).

    Raises:
        ValueError: For an unknown aggregation.
    """
    if aggregation == "per_gold_step":
        shares = [s / (1 + expected_steps) for s in scores]
        total = sum(shares)
        clipped = min(max(total, bounds[0]), bounds[1])
        return [share * clipped / total for share in shares] if clipped != total else shares
    if aggregation == "mean":
        return [s / len(scores) for s in scores]
    if aggregation == "sum":
        return list(scores)
    if aggregation == "min":
        lowest = min(range(len(scores)), key=scores.__getitem__, default=None)
        return [s if i == lowest else 0.0 for i, s in enumerate(scores)]
    raise ValueError(f"unknown step aggregation {aggregation!r}; choose one of {', '.join(STEP_AGGREGATIONS)}")


def score_range(score: str = "signed", log_eps: float = 0.01) -> tuple[float, float]:
    """The lowest and highest value :func:`step_score` gives under ``score``."""
    return {"signed": (-1.0, 1.0), "brier": (0.0, 1.0), "log": (math.log(log_eps), math.log(1.0 - log_eps))}[score]


def calibration_step_term(rollouts: Sequence[Rollout], problems: Sequence[Problem], *,
                          calibration_score: str = "signed", step_aggregation: str = "per_gold_step",
                          log_eps: float = 0.01, judged: Sequence[list[JudgedStep]] | None = None,
                          **settings) -> list[list[tuple[int, float]]]:
    """Per rollout, ``(token index, share)`` for each judged step: the share sits at the value's last token.

    A rollout without a final answer gets one more share at its last token: a wrong answer at full
    confidence (module docstring). The shares of a rollout add up to its :func:`calibration_term` value.

    Args:
        judged: The rollouts' :func:`judge_rollouts` when the caller has them; None: judged here under
            ``settings`` (extraction, confidence, correctness).
    """
    if judged is None:
        judged = judge_rollouts(rollouts, problems, **settings)
    placed = []
    for rollout, steps in zip(rollouts, judged, strict=True):
        positions = [j.step.token_indices[-1] for j in steps]
        scores = [step_score(j.confidence, j.correct, calibration_score, log_eps) for j in steps]
        if not any(j.step.is_final for j in steps):
            positions.append(len(rollout.token_ids) - 1)
            scores.append(step_score(1.0, False, calibration_score, log_eps))
        problem = problems[rollout.problem_index]
        expected = len(problem.intermediate) or sum(j.correct and not j.step.is_final for j in steps)
        shares = step_shares(scores, step_aggregation, expected, score_range(calibration_score, log_eps))
        placed.append(list(zip(positions, shares, strict=True)))
    return placed


def calibration_term(rollouts: Sequence[Rollout], problems: Sequence[Problem], **settings) -> list[float]:
    """The aggregated calibration score of each rollout.

    Takes the keyword settings of :func:`calibration_step_term`.
    """
    return [sum(share for _, share in row) for row in calibration_step_term(rollouts, problems, **settings)]
