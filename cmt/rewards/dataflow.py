"""Which steps of a rollout belong to *this* problem: the quantities a question states, and the steps that
use them.

CCRL judges a step only when it is part of solving the problem (docs/rl.md, "Which steps are judged"). A
step qualifies when its written expression uses at least one *input*: a quantity the question states (as
digits, or as a word such as "twice", "half", "dozen", "three"), a result an earlier judged step stated, or
one of the problem's gold intermediate values. Steps that use none of them (``1 + 1 = 2.`` padded into a
rollout), repeats of a value already judged, and trivial identities whose result equals one of their own
operands (``x * 1``, ``x + 0``, ``x - 0``, ``x / 1``, ``0 * x``) are not judged: they earn nothing and cost
nothing, so writing them cannot raise a reward.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fractions import Fraction

from cmt.data.answers import parse_number

# Numbers as a model or a question writes them: sign, thousands separators, decimals ("$1,200.50").
_NUMBER = re.compile(r"(?<![\w.])-?\$?(?:\d{1,3}(?:,\d{3})+|\d{1,30})(?:\.\d{1,30})?")
# Number words of word problems and the quantity each stands for. "half" and "quarter" stand for the divisor
# a solution writes (9 / 2) and for the fraction (0.5 * 9); "percent" for the 100 a percentage divides by.
_WORDS: dict[str, tuple[Fraction, ...]] = {
    **{word: (Fraction(value),) for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split())},
    **{word: (Fraction(10 * tens),) for tens, word in enumerate(
        "thirty forty fifty sixty seventy eighty ninety".split(), 3)},
    "hundred": (Fraction(100),), "thousand": (Fraction(1000),), "dozen": (Fraction(12),),
    "dozens": (Fraction(12),), "twice": (Fraction(2),), "double": (Fraction(2),), "doubles": (Fraction(2),),
    "doubled": (Fraction(2),), "pair": (Fraction(2),), "pairs": (Fraction(2),), "thrice": (Fraction(3),),
    "triple": (Fraction(3),), "triples": (Fraction(3),), "tripled": (Fraction(3),),
    "half": (Fraction(2), Fraction(1, 2)), "halves": (Fraction(2), Fraction(1, 2)),
    "quarter": (Fraction(4), Fraction(1, 4)), "quarters": (Fraction(4), Fraction(1, 4)),
    "percent": (Fraction(100),), "%": (Fraction(100),),
}
_WORD = re.compile(r"[A-Za-z]+|%")


def numbers_in(text: str) -> list[Fraction]:
    """The numbers written with digits in ``text``, in order (``"$1,200.50"`` -> 1200.5)."""
    values = []
    for match in _NUMBER.finditer(text):
        number = parse_number(match.group())
        if number is not None:
            values.append(number.value)
    return values


def question_quantities(question: str) -> frozenset[Fraction]:
    """The quantities a question states: its numbers, and those its number words stand for.

    Args:
        question: The problem text.

    Returns:
        A set of exact values (``"Half of the 12 apples"`` -> {2, 1/2, 12}).
    """
    found = set(numbers_in(question))
    for word in _WORD.findall(question):
        found.update(_WORDS.get(word.lower(), ()))
    return frozenset(found)


def value_of(text: str) -> Fraction | None:
    """The exact value of a written number (``Step.value``), or None when it does not read as one."""
    number = parse_number(text)
    return None if number is None else number.value


def uses_inputs(operands: Iterable[Fraction], inputs: set[Fraction] | frozenset[Fraction]) -> bool:
    """Whether at least one operand is an input of the problem (a stated quantity, an earlier result...)."""
    return any(operand in inputs for operand in operands)


def is_trivial(operands: list[Fraction], value: Fraction) -> bool:
    """Whether a step's result is one of its own operands: ``x * 1``, ``x + 0``, ``x / 1``, ``0 * x`` ...

    Such a step restates a number; it computes nothing the problem needs.
    """
    return value in operands
