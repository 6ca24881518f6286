"""Answer extraction and comparison: turn a model's text into a final answer and check it against the gold.

Two extraction modes, both reported for every run (:mod:`cmt.data.answers.extraction`):

- ``strict``: only explicit final-answer markers: the answer sentence ``The answer is 20.``
  (:func:`cmt.data.prompts.answer_sentence`; also "The final answer is", "The correct answer is",
  "Final answer:"), GSM8K's ``#### 20``, a final ``\\boxed{}`` of any answer type, and, when none of
  these yields an answer, a last line opening with ``A:`` or ``Answer:``. A model that writes no marker
  scores 0 here, which is the point.
- ``flexible``: the strict answer, else the last "answer is" / "answer:" / ``A:`` phrase, else (numeric
  answers) the last number in the text, or (choices) the option the final sentence names.

In both modes the *last* marker that yields an answer wins: models restate and correct themselves.

Answer types (benchmark config ``answer_type``; a problem's ``meta["answer_type"]`` overrides it;
comparison in :mod:`cmt.data.answers.comparison`, numbers in :mod:`cmt.data.answers.numbers`):

- ``number``: integers, decimals, fractions and mixed numbers; currency signs, thousands separators
  (commas, and spaces inside an answer: ``#### 204 500``), units, percent signs and number words
  ("twelve") are dropped. Equal when the rationals are equal, or within ``rel_tol``/``abs_tol`` (default
  1e-9: floating-point noise such as GSM-Hard's ``3244047.0999999996`` for ``3244047.1``, not a licence
  for ``999950`` against ``1000000``), or when the less precise side has at least two decimals and the
  other rounds to it (gold ``4.33`` vs ``13/3``). An answer stating several values (``3 and 7``) matches
  only a gold with the same values, never a single one.
- ``fraction``: as ``number`` without the tolerance: exact, rounded to at least two decimals, or a
  floating-point printout of the fraction (``0.14285714285714285`` for ``1/7``).
- ``text``: normalised strings (case, articles, punctuation, spacing, number spelling, list separators).
- ``choice``: multiple choice; a letter (``C``, ``(c)``) or an option's text, resolved against the
  problem's ``choices`` so that a letter and the option it names compare equal.
- ``latex``: LaTeX expressions (MATH): normalised LaTeX strings, numerically when both are numbers, and
  with ``math-verify`` when it is installed (LaTeX parsing only, on the main thread, with its timeouts).

:class:`AnswerRules` reads one problem's rules from its ``meta``: eval's scoring and RL's outcome reward
both check answers through it.

Nothing here evaluates model output: numbers are read with regular expressions into ``Fraction`` from
digit strings of at most :data:`MAX_DIGITS` digits, never with ``eval``, ``float()`` on raw text or sympy.
"""

from cmt.data.answers.comparison import ANSWER_TYPES, is_correct, normalize_text
from cmt.data.answers.extraction import MAX_MARKERS, TAIL_CHARS, extract_flexible, extract_strict, last_boxed
from cmt.data.answers.numbers import (
    DEFAULT_ABS_TOL,
    DEFAULT_REL_TOL,
    MAX_DIGITS,
    SEGMENT_CHARS,
    Number,
    normalize_number,
    numbers_match,
    parse_number,
    parse_numbers,
    to_number,
)
from cmt.data.answers.rules import AnswerRules

__all__ = [
    "ANSWER_TYPES", "AnswerRules", "DEFAULT_ABS_TOL", "DEFAULT_REL_TOL", "MAX_DIGITS", "MAX_MARKERS", "SEGMENT_CHARS",
    "TAIL_CHARS", "Number", "extract_flexible", "extract_strict", "is_correct", "last_boxed",
    "normalize_number", "normalize_text", "numbers_match", "parse_number", "parse_numbers", "to_number",
]
