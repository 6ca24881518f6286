"""Whether each step's stated result is right *for this problem*: True, False, or None (not judged).

Which steps are judged (every mode; :mod:`cmt.rewards.dataflow`): a step with a written expression
(``lhs``) is judged when the expression uses an input of the problem (a quantity of the question, a result
of an earlier judged step, a gold intermediate value), is not a trivial identity (its result equals one of
its operands: ``x * 1``, ``x + 0``) and states a value no earlier judged step stated (no repeats). A step
without an expression (``bought = 15``) is judged only against gold intermediate values, and not when it
restates an input. The final answer is always judged, against the gold answer.

Modes (``reward.correctness``):

- ``problem`` (default): where the problem has gold intermediate values (the synthetic world's programs,
  GSM8K's ``<<48/2=24>>`` annotations), a step is right when its arithmetic is right *and* its value is
  one of the gold intermediate values or the gold answer: ``left = 20 + 15 = 35`` is wrong where the
  problem subtracts. Elsewhere a dataflow check: only steps whose result is used, by a later judged step
  or as the final answer, are judged (a true but dead-end computation over the question's numbers is not,
  so padding cannot raise a reward where no gold values exist). Such a step is wrong when its arithmetic
  is wrong; right when its arithmetic is right and the final answer is right; and not judged when its
  arithmetic is right but the answer is wrong: some step of a chain that ends in a wrong answer chose the
  wrong operation or quantity, and without gold values nothing says which. Crediting them would let a
  policy raise a wrong answer's reward by writing true arithmetic that leads to it.
- ``outcome``: every judged step takes the final answer's correctness (the crudest credit assignment).

Steps judged None are left out of the calibration term.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

from cmt.data.answers import is_correct
from cmt.data.problem import Problem
from cmt.rewards.arith import ExpressionError, evaluate
from cmt.rewards.dataflow import is_trivial, numbers_in, question_quantities, uses_inputs, value_of
from cmt.rewards.steps import Step

CORRECTNESS_MODES = ("problem", "outcome")
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


def _as_text(value: float | int | str) -> str:
    """A gold intermediate value as a plain decimal string (``30.0`` -> ``"30"``, ``4.5`` -> ``"4.5"``)."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")
    return str(value)


def gold_values(problem: Problem) -> list[str]:
    """The gold intermediate values and the gold answer, as strings; empty when the data has no intermediates."""
    if not problem.intermediate:
        return []
    return [_as_text(v) for v in problem.intermediate] + [problem.gold]


def _candidates(steps: Sequence[Step], problem: Problem, golds: list[str]) -> list[bool]:
    """Which intermediate steps are judged at all (the module docstring's rules), in order."""
    stated_by_question = question_quantities(problem.question)
    inputs = set(stated_by_question) | {v for v in map(value_of, golds) if v is not None}
    stated: set[Fraction] = set()
    judged = []
    for step in steps:
        value = value_of(step.value) if len(step.value) <= _MAX_VALUE_CHARS else None
        if step.is_final or value is None:
            judged.append(False)
            continue
        if step.lhs is None:
            # A bare value is a claim only the gold values can check; restating an input claims nothing.
            keep = bool(golds) and value not in stated_by_question and value not in stated
        else:
            operands = numbers_in(step.lhs)
            keep = uses_inputs(operands, inputs | stated) and not is_trivial(operands, value) and value not in stated
        judged.append(keep)
        if keep:
            stated.add(value)
    return judged


def _used(steps: Sequence[Step], judged: list[bool]) -> list[bool]:
    """For the dataflow check: whether each judged step's value feeds a later judged step or is the answer."""
    needed = {value_of(s.value) for s in steps if s.is_final}
    used = [False] * len(steps)
    for index in range(len(steps) - 1, -1, -1):
        step = steps[index]
        if judged[index] and value_of(step.value) in needed:
            used[index] = True
            needed.update(numbers_in(step.lhs or ""))
    return used


def step_correctness(steps: Sequence[Step], problem: Problem, answer_correct: bool,
                     mode: str = "problem") -> list[bool | None]:
    """Judge each step of one completion.

    Args:
        steps: The completion's steps (:func:`cmt.rewards.steps.find_steps`), in text order.
        problem: The problem it answers (question, gold answer, gold intermediate values).
        answer_correct: Whether its final answer is correct (:func:`cmt.rewards.outcome.answer_correct`).
        mode: ``problem`` or ``outcome``.

    Returns:
        One verdict per step: True, False, or None (not judged: see the module docstring).

    Raises:
        ValueError: For an unknown mode.
    """
    if mode not in CORRECTNESS_MODES:
        raise ValueError(f"unknown correctness mode {mode!r}; choose one of {', '.join(CORRECTNESS_MODES)}")
    golds = gold_values(problem)
    judged = _candidates(steps, problem, golds)
    if not golds:
        judged = [j and u for j, u in zip(judged, _used(steps, judged), strict=True)]
    verdicts: list[bool | None] = []
    for step, keep in zip(steps, judged, strict=True):
        if step.is_final:
            verdicts.append(answer_correct)
        elif not keep:
            verdicts.append(None)
        elif mode == "outcome":
            verdicts.append(answer_correct)
        else:
            arithmetic = True if step.lhs is None else arithmetic_matches(step.lhs, step.value)
            if arithmetic is None:
                verdicts.append(None)
            elif golds:
                verdicts.append(arithmetic and any(is_correct(step.value, gold) for gold in golds))
            elif not arithmetic:
                verdicts.append(False)
            else:
                verdicts.append(True if answer_correct else None)
    return verdicts
