"""Find the numeric results a completion states, and the tokens that spell each one.

CCRL scores the model's confidence in its intermediate results, so it needs, for every result, its
value, the expression it claims to compute (when one is written) and the generated tokens of the value,
whose log-probabilities give the confidence. Two kinds of step are found:

- **intermediate**: a number right after ``=`` that is not the start of a longer expression:
  ``15`` in ``bought = 5 * 3 = 15.``, ``7`` in ``<<3+4=7>>``. Its ``lhs`` is the arithmetic written just
  before the ``=`` (``5 * 3``) when that contains a binary operator, else None (``bought = 15``).
- **final**: the answer, extracted exactly as evaluation extracts it (:mod:`cmt.data.answers`), located at
  its occurrence right after the answer marker (its last occurrence when it comes from the last-number
  fallback). After CoMT-SFT a completion is number-free meta-thoughts followed by
  ``The answer is N.``, so the final answer is often the only step; it is always found when an answer
  can be extracted, so the calibration term always has something to score.

Pattern matching is linear-time on hostile text (bounded quantifiers, a bounded look-back window).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cmt.data.answers import extract_flexible, extract_strict, normalize_number
from cmt.generation import tokens_in_span
from cmt.rewards.arith import ExpressionError, evaluate

EXTRACTIONS = ("flexible", "strict")
# The sentences strict extraction reads the answer after (cmt.data.answers), lower case.
_STRICT_MARKERS = ("####", "the answer is", "the final answer is")

# The number shape of cmt.data.answers, so located answers line up with extracted ones.
_NUMBER = r"-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d{1,400})(?:\.\d{1,400})?"
_ANY_NUMBER = re.compile(_NUMBER)
# "= <number>" where the number is complete (no digit follows) and is not the start of an expression
# on the same line ("= 5 * 3"; a "- item" on the next line is a list, not a subtraction); "<=", ">=",
# "!=" and "==" are comparisons, not results.
_RESULT = re.compile(rf"(?<![<>!=])=\s*({_NUMBER})(?!\d|[.,]\d)(?![ \t]*[-+*/×÷−^])")
# Characters an arithmetic left-hand side is made of (scanned backwards from the "=").
_LHS_CHARS = frozenset("0123456789.,+-−*/×÷()$ \t")
# A binary operator: one that follows an operand. "- 4" alone is a unary minus, not a computation.
_BINARY = re.compile(r"[\d)]\s*[-+*/×÷−]")


@dataclass(frozen=True)
class Step:
    """One stated numeric result.

    Attributes:
        value: The number as written, normalised (``"1,200"`` -> ``"1200"``, ``"$15"`` -> ``"15"``).
        lhs: The arithmetic expression the step claims to evaluate (``"5 * 3"``), or None.
        char_span: (start, end) characters of the value in the completion text, sign included.
        token_indices: Indices of the completion tokens that overlap ``char_span`` (at least one).
        is_final: Whether this is the final answer.
    """

    value: str
    lhs: str | None
    char_span: tuple[int, int]
    token_indices: tuple[int, ...]
    is_final: bool


def extract_answer(text: str, extraction: str) -> str | None:
    """The final answer of ``text`` with ``flexible`` or ``strict`` extraction (see cmt.data.answers).

    Raises:
        ValueError: For an unknown extraction mode.
    """
    if extraction == "flexible":
        return extract_flexible(text)
    if extraction == "strict":
        return extract_strict(text)
    raise ValueError(f"unknown answer extraction {extraction!r}; choose one of {', '.join(EXTRACTIONS)}")


def _value_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Narrow a number match to sign and digits: drop a leading ``$`` and space (``"$ 15"`` -> ``"15"``)."""
    if text[start] != "-":
        while start < end and (text[start] == "$" or text[start].isspace()):
            start += 1
    return start, end


def _lhs_before(text: str, equals: int, max_chars: int) -> str | None:
    """The arithmetic expression that ends just before ``text[equals] == "="``, or None.

    The expression is the longest parseable suffix, starting at a word boundary, of the run of arithmetic
    characters before the ``=``: in ``"15. 15 + 12 = 27"`` the run is ``"15. 15 + 12"`` and the expression
    ``"15 + 12"``. A run without a binary operator (``"bought = 15"``, ``"apples + 4 = 7"``) gives None.
    """
    start = equals
    floor = max(0, equals - max_chars)
    while start > floor and text[start - 1] in _LHS_CHARS:
        start -= 1
    run = text[start:equals]
    candidates = [0] + [i + 1 for i, char in enumerate(run) if char.isspace() or char == ","]
    for offset in candidates:
        candidate = run[offset:].strip()
        if not _BINARY.search(candidate):
            continue
        try:
            evaluate(candidate)
        except ExpressionError:
            continue
        return candidate
    return None


def _answer_occurrence(text: str, answer: str, occurrences: list[re.Match]) -> re.Match:
    """Where the final answer is stated: its first occurrence after the last answer marker (``The answer
    is``, ``####``) when the marker gives it, else its last occurrence (the last-number fallback).

    Reading it at the marker means a copy of the answer written after the sentence (``The answer is 7.
    3 + 4 = 7``) cannot lend the answer its confidence.
    """
    if extract_strict(text) == answer:
        lowered = text.encode("ascii", "replace").decode().lower()  # one character per character
        marker = max(lowered.rfind(m) for m in _STRICT_MARKERS)
        after = [m for m in occurrences if m.start() >= marker]
        if after:
            return after[0]
    return occurrences[-1]


def find_steps(text: str, offsets: Sequence[tuple[int, int]], extraction: str = "flexible",
               max_lhs_chars: int = 200) -> list[Step]:
    """All stated results of a completion, in text order, the final answer included.

    Args:
        text: The completion text (``Rollout.text``).
        offsets: (start, end) character span of each token in ``text`` (``Rollout.offsets``).
        extraction: How the final answer is extracted: ``flexible`` (marker, else last number) or
            ``strict`` (only ``The answer is N`` / ``#### N``).
        max_lhs_chars: How far before an ``=`` to look for its expression.

    Returns:
        Steps sorted by position. When the final answer's occurrence is also an intermediate result
        (``... 27 - 7 = 20`` with flexible extraction), the two are one step with ``is_final`` set and
        the ``lhs`` kept. Steps whose span no token covers are left out.

    Raises:
        ValueError: For an unknown extraction mode.
    """
    answer = extract_answer(text, extraction)
    steps: dict[tuple[int, int], Step] = {}
    for match in _RESULT.finditer(text):
        span = _value_span(text, *match.span(1))
        tokens = tuple(tokens_in_span(offsets, *span))
        if tokens:
            steps[span] = Step(normalize_number(match.group(1)), _lhs_before(text, match.start(), max_lhs_chars),
                               span, tokens, is_final=False)
    if answer is not None:
        occurrences = [m for m in _ANY_NUMBER.finditer(text) if normalize_number(m.group()) == answer]
        if occurrences:
            span = _value_span(text, *_answer_occurrence(text, answer, occurrences).span())
            tokens = tuple(tokens_in_span(offsets, *span))
            if tokens:
                lhs = steps[span].lhs if span in steps else None
                steps[span] = Step(answer, lhs, span, tokens, is_final=True)
    return [steps[span] for span in sorted(steps)]
