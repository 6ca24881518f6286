"""Answer-level reward terms: is the final answer right, and is it given in the trained format.

Both are reward terms in the TRL style: ``fn(rollouts, problems, **settings) -> list[float]``, one value
per rollout; ``problems[rollout.problem_index]`` is the problem a rollout answers. Terms receive every
reward setting as keywords and read the ones they need.
"""

from __future__ import annotations

from collections.abc import Sequence

from cmt.data.answers import AnswerRules, extract_strict
from cmt.data.problem import Problem
from cmt.rewards.types import Rollout


def rollout_extraction(rollout: Rollout, extraction: str = "flexible") -> str:
    """The extraction that reads a rollout's answer: ``extraction``, but ``strict`` for a truncated rollout.

    A rollout cut at ``max_new_tokens`` has not given an answer unless it wrote the answer sentence: its
    last number is whatever it was computing when cut, and letting that count would reward running out of
    tokens on a lucky number (and rambling through candidate numbers).
    """
    return extraction if rollout.finished else "strict"


def answer_correct(rollout: Rollout, problem: Problem, extraction: str = "flexible") -> bool:
    """Whether the rollout's final answer (:func:`rollout_extraction`) matches the gold answer, read and
    compared under the problem's own rules (answer type, options, tolerance) exactly as eval scores it."""
    rules = AnswerRules.of(problem)
    return rules.correct(rules.extract(rollout.written, rollout_extraction(rollout, extraction)), problem.gold)


def well_formed(rollout: Rollout) -> bool:
    """Whether the rollout ended by itself (EOS, not cut at the length limit) with an answer sentence.

    The answer sentence is what strict extraction reads (``The answer is N`` or ``#### N``), the format
    every SFT target ends with.
    """
    return rollout.finished and extract_strict(rollout.text) is not None


def outcome_term(rollouts: Sequence[Rollout], problems: Sequence[Problem], *, extraction: str = "flexible",
                 **_settings) -> list[float]:
    """1.0 for each rollout whose final answer is correct, else 0.0."""
    return [float(answer_correct(r, problems[r.problem_index], extraction)) for r in rollouts]


def format_term(rollouts: Sequence[Rollout], problems: Sequence[Problem], **_settings) -> list[float]:
    """1.0 for each well-formed rollout (:func:`well_formed`), else 0.0."""
    return [float(well_formed(r)) for r in rollouts]
