"""Extraction: find the final answer in a model's text, in ``strict`` or ``flexible`` mode.

Strict accepts only explicit final-answer markers (the list, with an example each, is in
docs/benchmarks.md "Answer checking"); flexible falls back to looser phrases and to the last number.
Every search is linear in the text: markers are found with ``str.rfind``, at most :data:`MAX_MARKERS` of
them are tried, and patterns run on bounded windows, so hostile output cannot stall an evaluation.
"""

from __future__ import annotations

import re
from itertools import islice

from cmt.data.answers.comparison import check_type, choice_index, letters, normalize_text, option_texts
from cmt.data.answers.numbers import MAX_DIGITS, NUMBER, SEGMENT_CHARS, clean, number_from_match, parse_numbers

# How many final-answer markers are tried, last first, before giving up.
MAX_MARKERS = 16
# The text window the last-number and last-sentence fallbacks read.
TAIL_CHARS = 2000

# Strict markers found anywhere: the answer sentence in its forms, GSM8K's "####", "Final answer:".
_STRICT_MARKERS = (b"####", b"the answer is", b"final answer is", b"correct answer is", b"final answer:")
# Strict markers that must open the last non-empty line (after markdown): "A: 18", "**Answer:** 18".
_LINE_MARKERS = ("a:", "a :", "answer:", "answer :")
_LOOSE_MARKERS = (b"answer is", b"answer:", b"answer =", b"final answer", b"\na:", b"\na :")
_BOXES = ("\\boxed", "\\fbox")

_LETTER = re.compile(r"^[\s*(\[{'\"]*(?:option\s+|choice\s+)?(?:\(([A-Za-z])\)|\b([A-Z])\b(?![.']\w))")
_PAREN_LETTER = re.compile(r"\(([A-Za-z])\)")
# A sentence ends at ".", "!" or "?" and a space, or at a line break; not after an initial or a title
# ("3:20 P. M.", "Mrs. Hilt").
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\b[A-Za-z]\.)(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)\s+|\n")


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


def _last_box(text: str) -> tuple[int, str | None]:
    """Position and content of the last closed ``\\boxed{}`` / ``\\fbox{}``; ``(-1, None)`` when there is none."""
    end = len(text)
    for _ in range(MAX_MARKERS):
        pos, name = max((text.rfind(box, 0, end), box) for box in _BOXES)
        if pos < 0:
            break
        content = _braced(text, pos + len(name))
        if content is not None:
            return pos, content
        end = pos
    return -1, None


def last_boxed(text: str) -> str | None:
    """The content of the last closed ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces matched), else None."""
    return _last_box(text)[1]


def _lower(text: str) -> bytes:
    """``text`` as lower-case ASCII bytes, one byte per character (others become ``?``), so indices match.

    Markers are searched in this copy: ``str.lower`` can lengthen non-ASCII characters and is slow on them.
    """
    return text.encode("ascii", "replace").lower()


def _after_markers(text: str, lowered: bytes, markers: tuple[bytes, ...], read, start: int = 0):
    """``read(segment)`` for the segment after the last of ``markers`` at or after ``start`` (searched in
    ``lowered``, the text's :func:`_lower` copy) that reads as an answer, else None.

    Each marker's last position is kept, and only the marker just tried is searched again (further
    back), so the text is scanned about once per marker, not once per attempt.
    """
    last = {m: lowered.rfind(m, start) for m in markers}
    for _ in range(MAX_MARKERS):
        marker = max(last, key=last.__getitem__)
        pos = last[marker]
        if pos < 0:
            return None
        begin = pos + len(marker)
        answer = read(text[begin:begin + SEGMENT_CHARS].lstrip(" :=\t*"))
        if answer is not None:
            return answer
        last[marker] = lowered.rfind(marker, start, pos)
    return None


def _last_line_marker(text: str, read) -> str | None:
    """``read`` of the last non-empty line when it opens with a line marker ("A: 18", "**Answer:** (B)")."""
    stripped = text.rstrip()
    line = stripped[stripped.rfind("\n") + 1:][:SEGMENT_CHARS].lstrip(" \t*#>").replace("**", "")
    for marker in _LINE_MARKERS:
        if line[:len(marker)].lower() == marker:
            return read(line[len(marker):].lstrip(" :\t*"))
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
    matches = [m for m in NUMBER.finditer(clean(_tail(text))) if m.group("int") or m.group("dec")]
    if not matches:
        return None
    number = number_from_match(matches[-1])
    return number.canonical() if number is not None else None


def _named_choice(sentence: str, choices: list[str] | None) -> int | None:
    """Index of the one option whose text ``sentence`` contains as whole words, else None.

    An option found only inside a longer option found at the same place ("chess" in "chess club") does not
    count; two different options named make the sentence ambiguous (None).
    """
    if not choices:
        return None
    normalized = normalize_text(sentence)
    found = [(index, *m.span()) for index, option in enumerate(option_texts(choices)) if option
             for m in islice(re.finditer(rf"(?<!\w){re.escape(option)}(?!\w)", normalized), MAX_MARKERS)]
    named = {i for i, s, e in found if not any(a <= s and e <= b and b - a > e - s for _, a, b in found)}
    return named.pop() if len(named) == 1 else None


def _choice_fallback(text: str, choices: list[str] | None) -> str | None:
    """The choice of a text with no marker: a parenthesised letter in its final sentence, else the one
    option its final sentence names, else its last parenthesised letter."""
    tail = _tail(text).rstrip()
    valid = letters(choices)
    found = [(m.start(), m.group(1).upper()) for m in _PAREN_LETTER.finditer(tail) if m.group(1).upper() in valid]
    sentences = [s for s in _SENTENCE_END.split(tail[-SEGMENT_CHARS:]) if s.strip()]
    final = sentences[-1] if sentences else ""
    if found and found[-1][0] >= len(tail) - len(final):
        return found[-1][1]
    index = _named_choice(final, choices)
    if index is not None:
        return valid[index]
    return found[-1][1] if found else None


def _reader(answer_type: str, choices: list[str] | None):
    """The function that turns the text after a marker into an answer string (None if it holds none)."""
    def read_number(segment: str) -> str | None:
        boxed = last_boxed(segment[:SEGMENT_CHARS]) if segment.lstrip("$ ").startswith(_BOXES) else None
        values = parse_numbers(boxed if boxed is not None else _sentence(segment))
        return ", ".join(v.canonical() for v in values) or None

    def read_choice(segment: str) -> str | None:
        segment = clean(_sentence(segment))
        m = _LETTER.match(segment)
        valid = letters(choices)
        if m and (m.group(1) or m.group(2)).upper() in valid:
            return (m.group(1) or m.group(2)).upper()
        index = choice_index(segment, choices)
        return valid[index] if index is not None else None

    def read_text(segment: str) -> str | None:
        if segment.lstrip("$ ").startswith(_BOXES):
            segment = last_boxed(segment[:SEGMENT_CHARS]) or ""
        text = clean(_sentence(segment)).strip(" \t*\"'`$")
        return text or None

    def read_latex(segment: str) -> str | None:
        boxed = last_boxed(segment[:SEGMENT_CHARS]) if "\\boxed" in segment[:40] else None
        if boxed is not None:
            return boxed.strip() or None
        text = segment.split("\n", 1)[0]
        text = re.split(r"\.\s|\.$|\s(?:I hope)", text, maxsplit=1)[0].strip(" \t$*")
        return text or None

    return {"number": read_number, "fraction": read_number, "choice": read_choice, "text": read_text,
            "latex": read_latex}[check_type(answer_type)]


def _strict(text: str, lowered: bytes, answer_type: str, read) -> str | None:
    """The strict answer: the last sentence marker or final box that yields one, else a last-line marker.

    For ``text`` and ``latex`` answers, whose readers accept any words, a box beats every sentence marker.
    """
    box_at, boxed = _last_box(text)
    if boxed is not None:
        if answer_type in ("number", "fraction", "choice"):
            later = _after_markers(text, lowered, _STRICT_MARKERS, read, start=box_at)
            if later is not None:
                return later
        if answer_type == "latex":
            answer = boxed.strip()
        elif answer_type == "text":  # the whole box: "Mr. Hilt" is one answer, not a sentence
            answer = clean(boxed).strip(" \t*\"'`$")
        else:
            answer = read(boxed)
        if answer:
            return answer
    answer = _after_markers(text, lowered, _STRICT_MARKERS, read)
    return answer if answer is not None else _last_line_marker(text, read)


def extract_strict(text: str, answer_type: str = "number", choices: list[str] | None = None) -> str | None:
    """The answer after the last explicit final-answer marker: "The answer is" (also "The final/correct
    answer is", "Final answer:"), ``####``, a final ``\\boxed{}``, or a last line "A: ..." / "Answer: ...".

    Args:
        text: The model's output.
        answer_type: One of ``ANSWER_TYPES``; decides how the marker's sentence is read.
        choices: The options of a multiple-choice problem (so an option's text maps to its letter).

    Returns:
        The normalised answer (``"1200"``, ``"3/4"``, ``"C"``, ``"web page design class"`` as written;
        ``"3, 7"`` for an answer stating several numbers), or None when no marker yields one.

    Raises:
        ValueError: For an unknown ``answer_type``.
    """
    return _strict(text, _lower(text), answer_type, _reader(answer_type, choices))


def extract_flexible(text: str, answer_type: str = "number", choices: list[str] | None = None) -> str | None:
    """The strict answer, else the last "answer is"/"answer:"/``A:``, else the last number (numeric types)
    or, for choices, the option the final sentence names (by letter, else by its text).

    Args, Returns and Raises: as :func:`extract_strict`.
    """
    read, lowered = _reader(answer_type, choices), _lower(text)
    answer = _strict(text, lowered, answer_type, read)
    if answer is not None:
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
        return _choice_fallback(text, choices)
    return None
