"""Answer extraction and comparison: turn a model's text into a final answer and check it against the gold.

Two extraction modes, both reported for every run:

- ``strict``: only the final-answer markers a trained model is taught to write: the closing sentence
  ``The answer is 20.`` (:func:`cmt.data.prompts.answer_sentence`, also "The final answer is"), GSM8K's
  ``#### 20``, and for LaTeX answers the last ``\\boxed{}``. A model that has not learned the format
  scores 0 here, which is the point.
- ``flexible``: the strict answer, else the last ``\\boxed{}``/``\\fbox{}``, else the last "answer is" /
  "answer:" / ``A:`` phrase, else (numeric answers only) the last number in the text.

In both modes the *last* marker that yields an answer wins: models restate and correct themselves.

Answer types (benchmark config ``answer_type``; a problem's ``meta["answer_type"]`` overrides it):

- ``number``: integers, decimals, fractions and mixed numbers; currency signs, thousands separators,
  units, percent signs and number words ("twelve") are dropped. Equal when the rationals are equal, or
  within ``rel_tol``/``abs_tol`` (default 1e-9: floating-point noise such as GSM-Hard's
  ``3244047.0999999996`` for ``3244047.1``, not a licence for ``999950`` against ``1000000``), or when the
  less precise side has at least two decimals and the other rounds to it (gold ``4.33`` vs ``13/3``).
- ``fraction``: as ``number`` without the tolerance: exact, or rounded to at least two decimals.
- ``text``: normalised strings (case, articles, punctuation, spacing, number spelling, list separators).
- ``choice``: multiple choice; a letter (``C``, ``(c)``) or an option's text, resolved against the
  problem's ``choices`` so that a letter and the option it names compare equal.
- ``latex``: LaTeX expressions (MATH): normalised LaTeX strings, numerically when both are numbers, and
  with ``math-verify`` when it is installed (LaTeX parsing only, on the main thread, with its timeouts).

Nothing here evaluates model output: numbers are read with regular expressions into ``Fraction`` from
digit strings of at most :data:`MAX_DIGITS` digits, never with ``eval``, ``float()`` on raw text or sympy.
Every search is linear in the text: markers are found with ``str.rfind``, at most :data:`MAX_MARKERS` of
them are tried, and number patterns run on bounded windows, so hostile output cannot stall an evaluation.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

ANSWER_TYPES = ("number", "fraction", "text", "choice", "latex")
DEFAULT_REL_TOL = 1e-9
DEFAULT_ABS_TOL = 1e-9
# Longer digit strings are not answers (and would make exact arithmetic slow).
MAX_DIGITS = 60
# How many final-answer markers are tried, last first, before giving up.
MAX_MARKERS = 16
# Characters after a marker that may hold its answer, and the text window the last-number fallback reads.
SEGMENT_CHARS = 300
TAIL_CHARS = 2000

_STRICT_MARKERS = (b"####", b"the answer is", b"the final answer is")
_LOOSE_MARKERS = (b"answer is", b"answer:", b"answer =", b"final answer", b"\na:", b"\na :")
_BOXES = ("\\boxed", "\\fbox")

# A number: optional sign (not after a word or ")": "10-20" is a range), a mixed-number whole part,
# digits with optional thousands separators, decimals, and an optional "/denominator".
_NUMBER = re.compile(
    r"(?<![\w.)])(?=[-\u2212\u2013]?\s?[$\u20ac\u00a3\u00a5\u20b9]?\s?\.?\d)(?P<sign>[-\u2212\u2013]\s?)?"
    r"(?:[$\u20ac\u00a3\u00a5\u20b9]\s?)?"
    r"(?:(?P<whole>\d++)\s+(?=\d++\s*/\s*\d))?"
    r"(?P<int>\d{1,3}(?:,\d{3})++(?!\d)|\d++)?(?:\.(?P<dec>\d++))?"
    r"(?:\s*/\s*(?P<den>\d++)(?!\d|\.\d))?"
)
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_WORDS.update({w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)})
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_NUMBER_WORDS = "|".join(sorted({*_WORDS, *_SCALES}, key=len, reverse=True))
_WORD_RUN = re.compile(rf"\b(?:(?:{_NUMBER_WORDS})(?:\s+and\s+|[\s-]+|\b))++", re.IGNORECASE)
_LETTER = re.compile(r"^[\s*(\[{'\"]*(?:option\s+|choice\s+)?(?:\(([A-Za-z])\)|\b([A-Z])\b(?![.']\w))")
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]{0,200})\}")
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]{1,60})\s*\}\s*\{\s*([^{}]{1,60})\s*\}|\\[dt]?frac\s*(\d)\s*(\d)")
_ARTICLES = re.compile(r"^(?:the|a|an)\s+")
_SEPARATORS = re.compile(r"\s*(?:;|,|\band\b|&)\s*")
# LaTeX that symbolic evaluation could blow up on: nested or long exponents, factorials.
_EXPLOSIVE = re.compile(r"\^\s*\{[^{}]*[\^{]|\^\s*\{?\s*\d{3,}|!|\\(?:factorial|binom)")


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


def _number_from_match(m: re.Match) -> Number | None:
    """The :class:`Number` a :data:`_NUMBER` match spells, or None (no digits, too many, zero denominator)."""
    integer, dec, den, whole = (m.group("int") or ""), (m.group("dec") or ""), m.group("den"), m.group("whole")
    if not integer and not dec:
        return None
    integer = integer.replace(",", "")
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


def _clean(segment: str) -> str:
    """Drop markup around an answer: markdown emphasis, LaTeX math delimiters and spacing, ``\\text{}``."""
    segment = segment.replace("**", "").replace("\\$", "$").replace("\\%", "%").replace("{,}", ",")
    segment = re.sub(r"(?<=\d)\\[,;!]\s?(?=\d{3})", ",", segment)
    segment = re.sub(r"\\(?:left|right|displaystyle|[,;:! ])", "", segment)
    segment = _LATEX_TEXT.sub(r"\1", segment)
    segment = _FRAC.sub(lambda m: f"{m.group(1) or m.group(3)}/{m.group(2) or m.group(4)}", segment)
    return segment.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")


def parse_number(text: str | None) -> Number | None:
    """The first number written in ``text`` (after markup is dropped), else its number words, else None.

    An answer segment such as ``"12 * 3 = 36 apples"`` is read after its last ``=``.
    """
    if not text:
        return None
    segment = _clean(text[:SEGMENT_CHARS])
    segment = segment.rsplit("=", 1)[-1]
    for m in _NUMBER.finditer(segment):
        if m.group("int") or m.group("dec"):
            return _number_from_match(m)
    return _words_to_number(segment)


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


# --- extraction -------------------------------------------------------------------------------------------


def _sentence(segment: str) -> str:
    """The segment up to the end of its line or sentence (a period not followed by a digit)."""
    segment = segment.split("\n", 1)[0]
    return re.split(r"\.(?!\d)\s|\.$", segment, maxsplit=1)[0]


def _braced(text: str, start: int) -> str | None:
    """The content of the brace group opening at ``text[start]`` (``{`` or a bare token), or None if unclosed."""
    while start < len(text) and text[start] == " ":
        start += 1
    if start >= len(text):
        return None
    if text[start] != "{":
        m = re.match(r"[^\s$.,]{1,60}", text[start:start + 61])
        return m.group() if m else None
    depth = 0
    for m in re.finditer(r"[{}]", text[start:start + SEGMENT_CHARS * 3]):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return text[start + 1:start + m.start()]
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last closed ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces matched), else None."""
    end = len(text)
    for _ in range(MAX_MARKERS):
        pos, name = max((text.rfind(box, 0, end), box) for box in _BOXES)
        if pos < 0:
            return None
        content = _braced(text, pos + len(name))
        if content is not None:
            return content
        end = pos
    return None


def _lower(text: str) -> bytes:
    """``text`` as lower-case ASCII bytes, one byte per character (others become ``?``), so indices match.

    Markers are searched in this copy: ``str.lower`` can lengthen non-ASCII characters and is slow on them.
    """
    return text.encode("ascii", "replace").lower()


def _after_markers(text: str, lowered: bytes, markers: tuple[bytes, ...], read):
    """``read(segment)`` for the segment after the last of ``markers`` (searched in ``lowered``, the text's
    :func:`_lower` copy) that reads as an answer."""
    end = len(lowered)
    for _ in range(MAX_MARKERS):
        pos, marker = max((lowered.rfind(m, 0, end), m) for m in markers)
        if pos < 0:
            return None
        start = pos + len(marker)
        answer = read(text[start:start + SEGMENT_CHARS].lstrip(" :=\t*"))
        if answer is not None:
            return answer
        end = pos
    return None


def _tail(text: str) -> str:
    """The last :data:`TAIL_CHARS` characters, widened so as not to start inside a number."""
    start = max(0, len(text) - TAIL_CHARS)
    floor = max(0, start - MAX_DIGITS - 8)
    while start > floor and (text[start - 1].isdigit() or text[start - 1] in ",."):
        start -= 1
    return text[start:]


def _last_number(text: str) -> str | None:
    """The canonical last number of the text (None if there is none, or it is absurdly long)."""
    matches = [m for m in _NUMBER.finditer(_clean(_tail(text))) if m.group("int") or m.group("dec")]
    if not matches:
        return None
    number = _number_from_match(matches[-1])
    return number.canonical() if number is not None else None


def _reader(answer_type: str, choices: list[str] | None):
    """The function that turns the text after a marker into an answer string (None if it holds none)."""
    def read_number(segment: str) -> str | None:
        boxed = last_boxed(segment[:SEGMENT_CHARS]) if segment.lstrip("$ ").startswith(_BOXES) else None
        number = parse_number(boxed if boxed is not None else _sentence(segment))
        return number.canonical() if number is not None else None

    def read_choice(segment: str) -> str | None:
        segment = _clean(_sentence(segment))
        m = _LETTER.match(segment)
        letters = _letters(choices)
        if m and (m.group(1) or m.group(2)).upper() in letters:
            return (m.group(1) or m.group(2)).upper()
        index = _choice_index(segment, choices)
        return letters[index] if index is not None else None

    def read_text(segment: str) -> str | None:
        if segment.lstrip("$ ").startswith(_BOXES):
            segment = last_boxed(segment[:SEGMENT_CHARS]) or ""
        text = _clean(_sentence(segment)).strip(" \t*\"'`$")
        return text or None

    def read_latex(segment: str) -> str | None:
        boxed = last_boxed(segment[:SEGMENT_CHARS]) if "\\boxed" in segment[:40] else None
        if boxed is not None:
            return boxed.strip() or None
        text = segment.split("\n", 1)[0]
        text = re.split(r"\.\s|\.$|\s(?:I hope)", text, maxsplit=1)[0].strip(" \t$*")
        return text or None

    return {"number": read_number, "fraction": read_number, "choice": read_choice, "text": read_text,
            "latex": read_latex}[_check_type(answer_type)]


def _check_type(answer_type: str) -> str:
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; choose one of {', '.join(ANSWER_TYPES)}")
    return answer_type


def _strict(text: str, lowered: bytes, answer_type: str, read) -> str | None:
    if answer_type == "latex":
        boxed = last_boxed(text)
        if boxed is not None:
            return boxed.strip() or None
    return _after_markers(text, lowered, _STRICT_MARKERS, read)


def extract_strict(text: str, answer_type: str = "number", choices: list[str] | None = None) -> str | None:
    """The answer after the last strict marker ("The answer is", ``####``; the last ``\\boxed{}`` for LaTeX).

    Args:
        text: The model's output.
        answer_type: One of :data:`ANSWER_TYPES`; decides how the marker's sentence is read.
        choices: The options of a multiple-choice problem (so an option's text maps to its letter).

    Returns:
        The normalised answer (``"1200"``, ``"3/4"``, ``"C"``, ``"web page design class"`` as written),
        or None when no marker yields one.

    Raises:
        ValueError: For an unknown ``answer_type``.
    """
    return _strict(text, _lower(text), answer_type, _reader(answer_type, choices))


def extract_flexible(text: str, answer_type: str = "number", choices: list[str] | None = None) -> str | None:
    """The strict answer, else the last ``\\boxed{}``, else the last "answer is"/"answer:"/``A:``, else the
    last number (numeric types) or the last parenthesised option letter (choice).

    Args and Raises: as :func:`extract_strict`.
    """
    read, lowered = _reader(answer_type, choices), _lower(text)
    answer = _strict(text, lowered, answer_type, read)
    if answer is not None:
        return answer
    boxed = last_boxed(text)
    if boxed is not None:
        answer = read(boxed) if answer_type != "latex" else boxed.strip()
        if answer:
            return answer
    answer = _after_markers(text, lowered, _LOOSE_MARKERS, read)
    if answer is not None:
        return answer
    if lowered.startswith((b"a:", b"a :")):
        answer = read(text[2:].lstrip(" :"))
        if answer is not None:
            return answer
    if answer_type in ("number", "fraction", "latex"):
        return _last_number(text)
    if answer_type == "choice":
        letters = re.findall(r"\(([A-Za-z])\)", _tail(text))
        valid = [x.upper() for x in letters if x.upper() in _letters(choices)]
        return valid[-1] if valid else None
    return None


# --- comparison -------------------------------------------------------------------------------------------


def _round(value: Fraction, decimals: int) -> Fraction:
    """``value`` rounded half away from zero to ``decimals`` places, exactly."""
    scale = 10**decimals
    rounded = int((abs(value) * scale * 2 + 1) // 2)
    return Fraction(rounded if value >= 0 else -rounded, scale)


def numbers_match(predicted: Number, gold: Number, rel_tol: float = DEFAULT_REL_TOL,
                  abs_tol: float = DEFAULT_ABS_TOL, tolerance: bool = True) -> bool:
    """Whether two numbers are the same answer (see the module docstring for the rounding rule).

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
    precisions = [d for d in (predicted.decimals, gold.decimals) if d >= 0]
    places = min(precisions) if precisions else 0
    return places >= 2 and _round(a, places) == _round(b, places)


def normalize_text(text: str) -> str:
    """Lower-case, unpunctuated, single-spaced text with numbers canonical and list separators unified.

    ``"The 60th caller."`` -> ``"60th caller"``; ``"5 (years old); 15 (years old)"`` -> ``"5, 15"``;
    ``"3:30 p.m."`` -> ``"3:30 pm"``.
    """
    text = _clean(text[:SEGMENT_CHARS]).lower().replace("\u2019", "'")
    text = re.sub(r"\([^()]*\)", " ", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"\b(\d+)\.0+\b", r"\1", text)
    text = re.sub(r"[\"`*_]|(?<!\d)[.!?](?!\d)|\.$", "", text)
    text = _ARTICLES.sub("", " ".join(text.split()))
    return _SEPARATORS.sub(", ", text).strip(" ,")


def _letters(choices: list[str] | None) -> str:
    return "ABCDEFGHIJ"[:len(choices)] if choices else "ABCDE"


def _choice_index(answer: str, choices: list[str] | None) -> int | None:
    """Index of the option ``answer`` names: by letter, by ``A)text`` prefix, or by the option's own text."""
    if not choices:
        return None
    letters = _letters(choices)
    stripped = answer.strip().strip("()*. ")
    if len(stripped) == 1 and stripped.upper() in letters:
        return letters.index(stripped.upper())
    wanted = normalize_text(re.sub(r"^\(?[A-Ja-j]\)\s*", "", answer))
    options = [normalize_text(re.sub(r"^\(?[A-Ja-j]\)\s*", "", c)) for c in choices]
    return options.index(wanted) if wanted in options else None


def _latex_key(text: str) -> str:
    """A LaTeX answer reduced for string comparison: markup, spacing, ``\\dfrac`` and trailing periods dropped."""
    text = _clean(text[:SEGMENT_CHARS])
    text = re.sub(r"\^\s*\{?\\circ\}?|\\%|%|\$", "", text)
    text = re.sub(r"\\(?:dfrac|tfrac)", r"\\frac", text)
    return re.sub(r"\s+", "", text).rstrip(".").replace("{", "").replace("}", "")


def _math_verify_equal(predicted: str, gold: str) -> bool:
    """math-verify's verdict on two LaTeX answers; False when it is not installed or cannot run here safely.

    Only LaTeX parsing is used (no expression parsing, which goes through sympy's ``parse_expr``), only on
    short strings without towers of powers or factorials (which sympy would try to evaluate), and only on
    the main thread, where math-verify's signal-based timeouts (1 s for parsing and for comparing) work.
    """
    if threading.current_thread() is not threading.main_thread() or max(len(predicted), len(gold)) > 200 \
            or any(_EXPLOSIVE.search(text) for text in (predicted, gold)):
        return False
    try:
        from math_verify import LatexExtractionConfig, parse, verify
    except ImportError:
        return False
    config = [LatexExtractionConfig()]
    try:
        parsed_gold = parse(f"${gold}$", extraction_config=config, parsing_timeout=1)
        parsed_pred = parse(f"${predicted}$", extraction_config=config, parsing_timeout=1)
        return bool(parsed_gold and parsed_pred and verify(parsed_gold, parsed_pred, timeout_seconds=1))
    except Exception:  # noqa: BLE001 - a checker failure (its timeout included) is a mismatch, never a crash
        return False


def is_correct(predicted: str | None, gold: str, answer_type: str = "number", *,
               rel_tol: float = DEFAULT_REL_TOL, abs_tol: float = DEFAULT_ABS_TOL,
               choices: list[str] | None = None) -> bool:
    """Whether the extracted answer ``predicted`` matches ``gold`` under ``answer_type``.

    Args:
        predicted: The extracted answer (None when extraction failed: never correct).
        gold: The gold answer in the benchmark's notation.
        answer_type: One of :data:`ANSWER_TYPES`.
        rel_tol, abs_tol: Numeric tolerance for ``number``.
        choices: The options of a ``choice`` problem.

    Raises:
        ValueError: For an unknown ``answer_type``.
    """
    _check_type(answer_type)
    if predicted is None:
        return False
    if answer_type in ("number", "fraction"):
        a, b = parse_number(predicted), parse_number(gold)
        if a is not None and b is not None:
            return numbers_match(a, b, rel_tol, abs_tol, tolerance=answer_type == "number")
    if answer_type == "latex":
        a, b = parse_number(predicted), parse_number(gold)
        if a is not None and b is not None and _is_plain_number(predicted) and _is_plain_number(gold):
            return numbers_match(a, b, rel_tol, abs_tol)
        return _latex_key(predicted) == _latex_key(gold) or _math_verify_equal(predicted, gold)
    if answer_type == "choice":
        i, j = _choice_index(predicted, choices), _choice_index(gold, choices)
        if i is not None and j is not None:
            return i == j
    return normalize_text(predicted) == normalize_text(gold)


def _is_plain_number(text: str) -> bool:
    """Whether ``text`` is a single number once markup is dropped (``"\\frac{14}{3}"`` is, ``"2\\sqrt{3}"`` is not)."""
    cleaned = _clean(text[:SEGMENT_CHARS]).strip(" $.")
    m = _NUMBER.fullmatch(cleaned) if cleaned else None
    return m is not None and bool(m.group("int") or m.group("dec"))
