"""Whether each step's stated result is right: True, False, or None when it cannot be judged.

Modes (``reward.correctness``):

- ``arithmetic`` (default): the step's left-hand side, evaluated by the safe parser, equals its value
  (``5 * 3 = 15`` is right, ``5 * 3 = 16`` wrong). Needs no gold data, so it works on every benchmark,
  and it judges what the model executed. A step without an expression (``bought = 15``) is None.
- ``reference``: the value is one of the problem's gold intermediate values or its gold answer. A
  problem without gold intermediates (``Problem.intermediate`` empty) leaves its steps None.
- ``outcome``: every step takes the final answer's correctness (the crudest credit assignment).

In every mode the final-answer step is judged against the gold answer: that is what its correctness means.
Steps judged None are left out of the calibration term.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from cmt.data.answers import is_correct
from cmt.data.problem import Problem
from cmt.rewards.arith import ExpressionError, evaluate
from cmt.rewards.steps import Step

CORRECTNESS_MODES = ("arithmetic", "reference", "outcome")
# Longest written value compared exactly (longer ones are not results a model computes).
_MAX_VALUE_CHARS = 64


def arithmetic_matches(lhs: str, value: str) -> bool | None:
    """Whether ``lhs`` evaluates to the written ``value``; None when either cannot be read.

    A value written with ``d`` decimals is right when it is the exact result rounded to ``d`` decimals
    (within half a unit of its last digit): ``10 / 3 = 3.33`` is right, ``10 / 3 = 3.3`` too, ``7 / 2 = 3``
    is wrong (whole numbers must be exact).

    Args:
        lhs: An arithmetic expression (``Step.lhs``).
        value: A normalised number (``Step.value``), e.g. ``"15"``, ``"-2.5"``.
    """
    if len(value) > _MAX_VALUE_CHARS:
        return None
    try:
        result = evaluate(lhs)
        written = Fraction(value)
    except (ExpressionError, ValueError, ZeroDivisionError):
        return None
    if result == written:
        return True
    decimals = len(value.partition(".")[2])
    return decimals > 0 and abs(result - written) <= Fraction(5, 10 ** (decimals + 1))


def _reference_matches(value: str, problem: Problem) -> bool | None:
    if not problem.intermediate:
        return None
    references = [str(v) for v in problem.intermediate] + [problem.gold]
    return any(is_correct(value, reference) for reference in references)


def step_correctness(steps: Sequence[Step], problem: Problem, answer_correct: bool,
                     mode: str = "arithmetic") -> list[bool | None]:
    """Judge each step of one completion.

    Args:
        steps: The completion's steps (:func:`cmt.rewards.steps.find_steps`).
        problem: The problem it answers (gold answer, gold intermediate values).
        answer_correct: Whether its final answer is correct (:func:`cmt.rewards.outcome.answer_correct`).
        mode: ``arithmetic``, ``reference`` or ``outcome``.

    Returns:
        One verdict per step: True, False, or None (cannot be judged in this mode).

    Raises:
        ValueError: For an unknown mode.
    """
    if mode not in CORRECTNESS_MODES:
        raise ValueError(f"unknown correctness mode {mode!r}; choose one of {', '.join(CORRECTNESS_MODES)}")
    verdicts: list[bool | None] = []
    for step in steps:
        if step.is_final or mode == "outcome":
            verdicts.append(answer_correct)
        elif mode == "arithmetic":
            verdicts.append(None if step.lhs is None else arithmetic_matches(step.lhs, step.value))
        else:
            verdicts.append(_reference_matches(step.value, problem))
    return verdicts
