"""Answer-level reward terms: is the final answer right, and is it given in the trained format.

Both are reward terms in the TRL style: ``fn(rollouts, problems, **settings) -> list[float]``, one value
per rollout; ``problems[rollout.problem_index]`` is the problem a rollout answers. Terms receive every
reward setting as keywords and read the ones they need.
"""

from __future__ import annotations

from collections.abc import Sequence

from cmt.data.answers import extract_strict, is_correct
from cmt.data.problem import Problem
from cmt.rewards.steps import extract_answer
from cmt.rewards.types import Rollout


def answer_correct(rollout: Rollout, problem: Problem, extraction: str = "flexible") -> bool:
    """Whether the rollout's extracted final answer equals the problem's gold answer."""
    return is_correct(extract_answer(rollout.text, extraction), problem.gold)


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
