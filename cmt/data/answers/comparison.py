"""Comparing an extracted answer with the gold, by answer type.

Numbers are compared as exact rationals (:mod:`cmt.data.answers.numbers`), text after normalisation,
choices by the option they name, LaTeX as normalised strings, numerically, or with ``math-verify``
(LaTeX parsing only, on short strings, on the main thread, with its timeouts).
"""

from __future__ import annotations

import re
import threading

from cmt.data.answers.numbers import (
    DEFAULT_ABS_TOL,
    DEFAULT_REL_TOL,
    NUMBER,
    SEGMENT_CHARS,
    clean,
    numbers_match,
    parse_number,
    parse_numbers,
    values_match,
)

ANSWER_TYPES = ("number", "fraction", "text", "choice", "latex")

_ARTICLES = re.compile(r"^(?:the|a|an)\s+")
_SEPARATORS = re.compile(r"\s*(?:;|,|\band\b|&)\s*")
_OPTION_PREFIX = re.compile(r"^\(?[A-Ja-j]\)\s*")
# LaTeX that symbolic evaluation could blow up on: nested or long exponents, factorials.
_EXPLOSIVE = re.compile(r"\^\s*\{[^{}]*[\^{]|\^\s*\{?\s*\d{3,}|!|\\(?:factorial|binom)")


def check_type(answer_type: str) -> str:
    """``answer_type`` itself.

    Raises:
        ValueError: When it is not one of :data:`ANSWER_TYPES`.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; choose one of {', '.join(ANSWER_TYPES)}")
    return answer_type


def normalize_text(text: str) -> str:
    """Lower-case, unpunctuated, single-spaced text with numbers canonical and list separators unified.

    ``"The 60th caller."`` -> ``"60th caller"``; ``"5 (years old); 15 (years old)"`` -> ``"5, 15"``;
    ``"3:30 p.m."`` -> ``"3:30 pm"``.
    """
    text = clean(text[:SEGMENT_CHARS]).lower().replace("\u2019", "'")
    text = re.sub(r"\([^()]*\)", " ", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"\b(\d+)\.0+\b", r"\1", text)
    text = re.sub(r"[\"`*_]|(?<!\d)[.!?](?!\d)|\.$", "", text)
    text = _ARTICLES.sub("", " ".join(text.split()))
    return _SEPARATORS.sub(", ", text).strip(" ,")


def letters(choices: list[str] | None) -> str:
    """The option letters of a problem: one per choice, ``A``-``E`` when the choices are not known."""
    return "ABCDEFGHIJ"[:len(choices)] if choices else "ABCDE"


def option_texts(choices: list[str]) -> list[str]:
    """Each option's text normalised (:func:`normalize_text`), a leading ``A)`` dropped."""
    return [normalize_text(_OPTION_PREFIX.sub("", c)) for c in choices]


def choice_index(answer: str, choices: list[str] | None) -> int | None:
    """Index of the option ``answer`` names: by letter, by ``A)text`` prefix, or by the option's own text."""
    if not choices:
        return None
    options = letters(choices)
    stripped = answer.strip().strip("()*. ")
    if len(stripped) == 1 and stripped.upper() in options:
        return options.index(stripped.upper())
    wanted = normalize_text(_OPTION_PREFIX.sub("", answer))
    texts = option_texts(choices)
    return texts.index(wanted) if wanted in texts else None


def _latex_key(text: str) -> str:
    """A LaTeX answer reduced for string comparison: markup, spacing, ``\\dfrac`` and trailing periods dropped."""
    text = clean(text[:SEGMENT_CHARS])
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


def _is_plain_number(text: str) -> bool:
    """Whether ``text`` is a single number once markup is dropped (``"\\frac{14}{3}"`` is, ``"2\\sqrt{3}"`` is not)."""
    cleaned = clean(text[:SEGMENT_CHARS]).strip(" $.")
    m = NUMBER.fullmatch(cleaned) if cleaned else None
    return m is not None and bool(m.group("int") or m.group("dec"))


def is_correct(predicted: str | None, gold: str, answer_type: str = "number", *,
               rel_tol: float = DEFAULT_REL_TOL, abs_tol: float = DEFAULT_ABS_TOL,
               choices: list[str] | None = None) -> bool:
    """Whether the extracted answer ``predicted`` matches ``gold`` under ``answer_type``.

    For ``number`` and ``fraction`` both sides are read with :func:`parse_numbers`, so an answer holding
    several values (``"3, 7"``) never matches a single gold.

    Args:
        predicted: The extracted answer (None when extraction failed: never correct).
        gold: The gold answer in the benchmark's notation.
        answer_type: One of :data:`ANSWER_TYPES`.
        rel_tol, abs_tol: Numeric tolerance for ``number``.
        choices: The options of a ``choice`` problem.

    Raises:
        ValueError: For an unknown ``answer_type``.
    """
    check_type(answer_type)
    if predicted is None:
        return False
    if answer_type in ("number", "fraction"):
        listed, expected = parse_numbers(predicted), parse_numbers(gold)
        if listed and expected:
            return values_match(listed, expected, rel_tol, abs_tol, tolerance=answer_type == "number")
    if answer_type == "latex":
        a, b = parse_number(predicted), parse_number(gold)
        if a is not None and b is not None and _is_plain_number(predicted) and _is_plain_number(gold):
            return numbers_match(a, b, rel_tol, abs_tol)
        return _latex_key(predicted) == _latex_key(gold) or _math_verify_equal(predicted, gold)
    if answer_type == "choice":
        i, j = choice_index(predicted, choices), choice_index(gold, choices)
        if i is not None and j is not None:
            return i == j
    return normalize_text(predicted) == normalize_text(gold)
