"""Reading numbers from answer text and deciding whether two numbers are the same answer.

Numbers are read with regular expressions into ``Fraction`` from digit strings of at most
:data:`MAX_DIGITS` digits, never with ``eval`` or ``float()`` on raw text, and every pattern runs on a
window of at most :data:`SEGMENT_CHARS` characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

DEFAULT_REL_TOL = 1e-9
DEFAULT_ABS_TOL = 1e-9
# Longer digit strings are not answers (and would make exact arithmetic slow).
MAX_DIGITS = 60
# Characters after a marker that may hold its answer (and the window a number is read from).
SEGMENT_CHARS = 300
# A decimal written with at least this many significant digits is a floating-point printout
# (Python's repr of 1/7 is 0.14285714285714285): it matches a value whose nearest double it is.
FLOAT_PRINTOUT_DIGITS = 15
# How many values a list answer ("3, 5 and 7") may have before the rest is ignored.
MAX_LIST_VALUES = 16

# A number: optional sign (not after a word or ")": "10-20" is a range), a mixed-number whole part,
# digits with optional thousands separators (commas, or a space, no-break space or thin space before
# every group of exactly three digits: "204 500"; not before a hyphen: "12 200-kilobyte videos" is 12),
# decimals, and an optional "/denominator".
NUMBER = re.compile(
    r"(?<![\w.)])(?=[-\u2212\u2013]?\s?[$\u20ac\u00a3\u00a5\u20b9]?\s?\.?\d)(?P<sign>[-\u2212\u2013]\s?)?"
    r"(?:[$\u20ac\u00a3\u00a5\u20b9]\s?)?"
    r"(?:(?P<whole>\d++)\s+(?=\d++\s*/\s*\d))?"
    r"(?P<int>\d{1,3}(?:[ \u00a0\u2009\u202f]\d{3})++(?![\d\-\u2013])|\d{1,3}(?:,\d{3})++(?!\d)|\d++)?"
    r"(?:\.(?P<dec>\d++))?"
    r"(?:\s*/\s*(?P<den>\d++)(?!\d|\.\d))?"
)
# What may join the values of a list answer: a comma, semicolon, "&", "and", "or" (with an optional
# comma before "and"/"or"), after a percent sign or at most two unit words ("3 apples and 7 pears").
_LIST_JOIN = re.compile(r"%?(?:\s+[A-Za-z%]{1,20}){0,2}?\s*(,\s*(?:and|or)\b|and\b|or\b|&|,|;)\s*", re.IGNORECASE)
# What may follow the last value of a comma-only list for it to be a list ("3, 7." but not
# "12, 3 more than Tom"): unit words and closing punctuation.
_LIST_END = re.compile(r"(?:\s*[A-Za-z%]{1,20}){0,2}[\s.!)\]}$*]*")

_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_WORDS.update({w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)})
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_NUMBER_WORDS = "|".join(sorted({*_WORDS, *_SCALES}, key=len, reverse=True))
_WORD_RUN = re.compile(rf"\b(?:(?:{_NUMBER_WORDS})(?:\s+and\s+|[\s-]+|\b))++", re.IGNORECASE)
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]{0,200})\}")
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]{1,60})\s*\}\s*\{\s*([^{}]{1,60})\s*\}|\\[dt]?frac\s*(\d)\s*(\d)")


@dataclass(frozen=True)
class Number:
    """A number read from text: its exact value and how many decimals it was written with.

    Attributes:
        value: The exact rational value.
        decimals: Digits written after the decimal point (0 for integers, -1 for fractions ``a/b``, which
            stand for an exact value of unbounded precision).
    """

    value: Fraction
    decimals: int

    def canonical(self) -> str:
        """The value written back: ``"1200"``, ``"-3.5"``, ``"3/4"`` (fractions reduced, no trailing zeros)."""
        if self.value.denominator == 1:
            return str(self.value.numerator)
        if self.decimals >= 0:
            with localcontext() as ctx:
                ctx.prec = 2 * MAX_DIGITS
                text = format(Decimal(self.value.numerator) / Decimal(self.value.denominator), "f")
            return text.rstrip("0").rstrip(".") if "." in text else text
        return f"{self.value.numerator}/{self.value.denominator}"

    def is_float_printout(self) -> bool:
        """Whether the number was written with :data:`FLOAT_PRINTOUT_DIGITS` or more significant digits."""
        if self.decimals <= 0:
            return False
        digits = abs(self.value) * 10**self.decimals
        return digits.denominator == 1 and len(str(digits.numerator)) >= FLOAT_PRINTOUT_DIGITS


def number_from_match(m: re.Match) -> Number | None:
    """The :class:`Number` a :data:`NUMBER` match spells, or None (no digits, too many, zero denominator)."""
    integer, dec, den, whole = (m.group("int") or ""), (m.group("dec") or ""), m.group("den"), m.group("whole")
    if not integer and not dec:
        return None
    integer = re.sub(r"[, \u00a0\u2009\u202f]", "", integer)
    if len(integer) + len(dec) + len(den or "") + len(whole or "") > MAX_DIGITS:
        return None
    value = Fraction(int(integer or "0") * 10 ** len(dec) + int(dec or "0"), 10 ** len(dec))
    decimals = len(dec)
    if den is not None:
        if int(den) == 0 or dec:
            return None
        value, decimals = value / int(den), -1
        if whole is not None:
            value += int(whole)
    elif whole is not None:
        return None
    return Number(-value if m.group("sign") else value, decimals)


def _words_to_number(text: str) -> Number | None:
    """The integer spelled by the first run of number words in ``text`` ("one hundred and five" -> 105)."""
    m = _WORD_RUN.search(text[:SEGMENT_CHARS])
    if not m:
        return None
    total, current, seen = 0, 0, False
    for word in re.findall(r"[a-z]+", m.group().lower()):
        if word in _WORDS:
            current, seen = current + _WORDS[word], True
        elif word in _SCALES:
            current = max(current, 1) * _SCALES[word]
            if _SCALES[word] > 100:
                total, current = total + current, 0
            seen = True
    return Number(Fraction(total + current), 0) if seen else None


def clean(segment: str) -> str:
    """Drop markup around an answer: markdown emphasis, LaTeX math delimiters and spacing, ``\\text{}``."""
    segment = segment.replace("**", "").replace("\\$", "$").replace("\\%", "%").replace("{,}", ",")
    segment = re.sub(r"(?<=\d)\\[,;!]\s?(?=\d{3})", ",", segment)
    segment = re.sub(r"\\(?:left|right|displaystyle|[,;:! ])", "", segment)
    segment = _LATEX_TEXT.sub(r"\1", segment)
    segment = _FRAC.sub(lambda m: f"{m.group(1) or m.group(3)}/{m.group(2) or m.group(4)}", segment)
    return segment.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")


def _answer_segment(text: str) -> str:
    """The part of ``text`` an answer's number is read from: markup dropped, after the last ``=``."""
    return clean(text[:SEGMENT_CHARS]).rsplit("=", 1)[-1]


def _first_match(segment: str) -> re.Match | None:
    for m in NUMBER.finditer(segment):
        if m.group("int") or m.group("dec"):
            return m
    return None


def parse_number(text: str | None) -> Number | None:
    """The first number written in ``text`` (after markup is dropped), else its number words, else None.

    An answer segment such as ``"12 * 3 = 36 apples"`` is read after its last ``=``; digit groups
    separated by spaces are one number (``"204 500"`` -> 204500).
    """
    if not text:
        return None
    segment = _answer_segment(text)
    m = _first_match(segment)
    return number_from_match(m) if m is not None else _words_to_number(segment)


def parse_numbers(text: str | None) -> list[Number]:
    """The values of an answer: one number, or each value of a list answer, or ``[]`` when there is none.

    A list is two or more numbers joined by "and", "or", "&" or ";" (``"3 and 7"``, ``"3 apples or 7"``,
    ``"2, 4 and 6"``), or by commas alone when nothing but unit words follows the last (``"3, 7."``).
    ``"12, 3 more than Tom"`` is the single answer 12: the comma starts a remark; so is a value restated
    (``"1/2, or 0.5"``).
    """
    if not text:
        return []
    segment = _answer_segment(text)
    m = _first_match(segment)
    if m is None:
        number = _words_to_number(segment)
        return [number] if number is not None else []
    values, joins, end = [number_from_match(m)], [], m.end()
    while len(values) < MAX_LIST_VALUES:
        join = _LIST_JOIN.match(segment, end)
        if join is None:
            break
        following = NUMBER.match(segment, join.end())
        if following is None or not (following.group("int") or following.group("dec")):
            break
        values.append(number_from_match(following))
        joins.append(join.group(1).strip(" ,").lower())
        end = following.end()
    numbers = [v for v in values if v is not None]
    if len(numbers) < len(values):
        return []
    if len(numbers) > 1 and not any(joins) and _LIST_END.fullmatch(segment, end) is None:
        return numbers[:1]
    # One value restated ("1/2, or 0.5") is that value.
    return numbers[:1] if len({v.value for v in numbers}) == 1 else numbers


def normalize_number(text: str) -> str:
    """Canonical form of the first number in ``text`` (``"$1,200.50"`` -> ``"1200.5"``), else ``text`` stripped."""
    number = parse_number(text)
    return number.canonical() if number is not None else text.strip()


def to_number(text: str) -> float | None:
    """The first number in ``text`` as a float (``"3/4"`` -> 0.75); None when there is none or it overflows."""
    number = parse_number(text)
    if number is None:
        return None
    try:
        return float(number.value)
    except OverflowError:
        return None


def _round(value: Fraction, decimals: int) -> Fraction:
    """``value`` rounded half away from zero to ``decimals`` places, exactly."""
    scale = 10**decimals
    rounded = int((abs(value) * scale * 2 + 1) // 2)
    return Fraction(rounded if value >= 0 else -rounded, scale)


def numbers_match(predicted: Number, gold: Number, rel_tol: float = DEFAULT_REL_TOL,
                  abs_tol: float = DEFAULT_ABS_TOL, tolerance: bool = True) -> bool:
    """Whether two numbers are the same answer.

    Equal when the rationals are equal; or (``tolerance``) within ``rel_tol``/``abs_tol``; or when one
    side is a floating-point printout (:meth:`Number.is_float_printout`) and both sides round to the same
    double; or when the less precise side has at least two decimals and the other rounds to it.

    Args:
        predicted, gold: The two numbers.
        rel_tol, abs_tol: Relative and absolute tolerance (used when ``tolerance``).
        tolerance: Accept values within the tolerance (``number``); off for ``fraction``.
    """
    a, b = predicted.value, gold.value
    if a == b:
        return True
    if tolerance and abs(a - b) <= max(Fraction(rel_tol) * max(abs(a), abs(b)), Fraction(abs_tol)):
        return True
    if (predicted.is_float_printout() or gold.is_float_printout()) and float(a) == float(b):
        return True
    precisions = [d for d in (predicted.decimals, gold.decimals) if d >= 0]
    places = min(precisions) if precisions else 0
    return places >= 2 and _round(a, places) == _round(b, places)


def values_match(predicted: list[Number], gold: list[Number], rel_tol: float = DEFAULT_REL_TOL,
                 abs_tol: float = DEFAULT_ABS_TOL, tolerance: bool = True) -> bool:
    """Whether two answers hold the same values, in any order: a list never matches a single value.

    Args: as :func:`numbers_match`, with a list of numbers on each side (from :func:`parse_numbers`).
    """
    if not predicted or len(predicted) != len(gold):
        return False
    pairs = zip(sorted(predicted, key=lambda n: n.value), sorted(gold, key=lambda n: n.value), strict=True)
    return all(numbers_match(a, b, rel_tol, abs_tol, tolerance) for a, b in pairs)
