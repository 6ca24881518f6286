"""Which teacher outputs become training targets, and why the others do not.

Every output (sample) ends with exactly one outcome: kept, or dropped for the first reason that applies,
in this order (:data:`REASONS`):

- ``failed``: never received (the request failed after every retry; a rerun asks again).
- ``empty``: nothing left once the stated final answer is removed.
- ``overlong``: cut at the teacher's token limit (finish reason ``length``) or over ``max_words`` words.
- ``leak`` (CoMT): the meta-thought writes a number that is not in the question: a computed value.
- ``no_answer`` / ``wrong_answer`` (CoT): no final answer can be read, or it disagrees with the gold one.
- ``duplicate``: the same target for the same question text was already kept.
- ``unselected``: passed every filter but ``select`` kept another sample of the question.

How the answer is attached. Every target ends with the sentence ``The answer is N.`` with N the gold
answer (`cmt.data.prompts.answer_sentence`), as the rule teacher writes it: the student learns one way to
state an answer, and strict answer extraction finds it. A final sentence that states a value ("The answer
is 20.", "#### 20", "Final answer: 20") is removed from the teacher's text first; ``\\boxed{x}`` becomes
``x``. For CoMT the leak check runs on what remains, so a meta-thought may not compute the answer either;
the gold sentence is then attached. For CoT the teacher's own answer (flexible extraction over the whole
text) must equal the gold answer before its final sentence is replaced by the gold one.

What counts as a leaked number: a number written with digits whose value is in neither the question
(digits, or number words like "three" and "dozen") nor ``allowed_numbers`` (unit constants such as 100
for percentages). List markers ("1.", "Step 2:") are not numbers of the reasoning and are ignored.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from cmt.data.answers import extract_flexible, is_correct
from cmt.data.problem import Problem
from cmt.data.prompts import answer_sentence

REASONS = ("failed", "empty", "overlong", "leak", "no_answer", "wrong_answer", "duplicate", "unselected")
SELECTIONS = ("first", "shortest", "all")

_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?![\w])|(?<![\w.])\.\d+(?!\w)")
_ENUMERATION = re.compile(r"^[ \t>*#-]*(?:step\s*)?\d+\s*[.):]|\bstep\s*\d+\b", re.IGNORECASE | re.MULTILINE)
_FINAL_ANSWER = re.compile(
    r"(?:^|(?<=[.!?:\n]))[ \t*#]*(?:(?:so|thus|therefore|hence)\b[ ,]*)?(?:the\s+)?(?:final\s+)?"
    r"answer[*\s]*(?:is\b|:|=)[^\n]{0,120}\Z|####[^\n]{0,120}\Z",
    re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\s*\{([^{}]*)\}")
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
                      "ninety": 90, "hundred": 100, "thousand": 1000, "million": 10**6, "dozen": 12,
                      "twice": 2, "double": 2, "triple": 3, "half": 2, "third": 3, "quarter": 4})
_WORD = re.compile(r"\b({})s?\b".format("|".join(_NUMBER_WORDS)), re.IGNORECASE)


@dataclass(frozen=True)
class FilterConfig:
    """The ``teach.filters`` node and ``teach.select``.

    Attributes:
        max_words: Outputs longer than this (in whitespace-separated words) are ``overlong``.
        allowed_numbers: Values a meta-thought may write although the question does not (unit constants).
        select: Which of a question's passing samples to keep: ``first``, ``shortest`` or ``all``.
    """

    max_words: int = 400
    allowed_numbers: tuple[float, ...] = (0, 1, 100)
    select: str = "first"

    def __post_init__(self):
        if self.select not in SELECTIONS:
            raise ValueError(f"teach.select={self.select!r} is not one of {', '.join(SELECTIONS)}")


@dataclass(frozen=True)
class Sample:
    """One output of the teacher for one question: its text and why it ended (``stop`` or ``length``)."""

    text: str
    finish_reason: str = "stop"


def numbers_in(text: str) -> set[Fraction]:
    """Values of the numbers written with digits in ``text`` (``1,200`` and ``1200.0`` are the same)."""
    return {Fraction(m.group().replace(",", "")) for m in _NUMBER.finditer(text)}


def question_numbers(question: str) -> set[Fraction]:
    """The values a question states: its digit numbers and its number words ("three", "dozen", "half")."""
    words = {Fraction(_NUMBER_WORDS[m.group(1).lower()]) for m in _WORD.finditer(question)}
    return numbers_in(question) | words


def leaked_numbers(body: str, question: str, allowed: Iterable[float] = ()) -> list[str]:
    """The numbers of a meta-thought that the question does not state (list markers ignored), in order."""
    known = question_numbers(question) | {Fraction(str(a)) for a in allowed}
    text = _ENUMERATION.sub(" ", body)
    return [m.group() for m in _NUMBER.finditer(text) if Fraction(m.group().replace(",", "")) not in known]


def split_final_answer(text: str) -> tuple[str, str | None]:
    """Split a teacher's text into its reasoning and a final sentence that states a value.

    ``\\boxed{x}`` is unboxed first. A final "The answer is ...", "Final answer: ...", "#### ..." sentence
    is split off only when it holds a digit (a closing sentence that describes the answer in words is
    reasoning and stays).

    Returns:
        ``(body, stated)``: the text without that sentence (stripped), and the sentence (None if absent).
    """
    text = _BOXED.sub(r"\1", text).strip()
    match = _FINAL_ANSWER.search(text)
    if match is None or not re.search(r"\d", match.group()):
        return text, None
    return text[:match.start()].rstrip(), match.group().strip()


def attach_answer(body: str, gold: str) -> str:
    """``body`` closed with the gold answer sentence (a period added when the body ends without one)."""
    body = body.rstrip()
    if body and body[-1] not in ".!?":
        body += "."
    return f"{body} {answer_sentence(gold)}".strip()


def judge(sample: Sample, problem: Problem, kind: str, config: FilterConfig,
          answer_type: str = "number") -> tuple[str | None, str | None]:
    """The outcome of one sample before duplicates and selection.

    Args:
        sample: The teacher's output.
        problem: The question it answers (question, gold answer, ``meta["choices"]``).
        kind: ``comt`` or ``cot``.
        config: The filter settings.
        answer_type: How to compare a CoT answer with the gold (`cmt.data.answers.ANSWER_TYPES`).

    Returns:
        ``(reason, None)`` when dropped, else ``(None, target)``: the text the student is trained on.
    """
    body, _ = split_final_answer(sample.text)
    if not body:
        return "empty", None
    if sample.finish_reason == "length" or len(sample.text.split()) > config.max_words:
        return "overlong", None
    if kind == "comt":
        if leaked_numbers(body, problem.question, config.allowed_numbers):
            return "leak", None
    else:
        answer_type = problem.meta.get("answer_type", answer_type)
        stated = extract_flexible(sample.text, answer_type, problem.meta.get("choices"))
        if stated is None:
            return "no_answer", None
        if not is_correct(stated, problem.gold, answer_type, choices=problem.meta.get("choices")):
            return "wrong_answer", None
    return None, attach_answer(body, problem.gold)


class Selector:
    """Applies the filters to each question's samples, keeping counts of every outcome.

    Duplicates are found across the whole training set: a (question text, target) pair is kept once.

    Args:
        kind: ``comt`` or ``cot``.
        config: The filter settings.
        answer_type: The benchmark's answer type (a problem's ``meta["answer_type"]`` overrides it).

    Attributes:
        counts: Outcomes so far: ``kept`` and one entry per reason of :data:`REASONS`.
    """

    def __init__(self, kind: str, config: FilterConfig, answer_type: str = "number"):
        self.kind, self.config, self.answer_type = kind, config, answer_type
        self.counts: Counter[str] = Counter({reason: 0 for reason in ("kept", *REASONS)})
        self._seen: set[tuple[str, str]] = set()

    def select(self, problem: Problem, samples: Sequence[Sample], missing: int = 0) -> list[str]:
        """The targets kept for one question.

        Args:
            problem: The question.
            samples: The outputs received for it.
            missing: Outputs asked for but never received (counted as ``failed``).
        """
        self.counts["failed"] += missing
        candidates: list[str] = []
        for sample in samples:
            reason, target = judge(sample, problem, self.kind, self.config, self.answer_type)
            if reason is None and ((problem.question, target) in self._seen or target in candidates):
                reason = "duplicate"
            if reason is None:
                candidates.append(target)
            else:
                self.counts[reason] += 1
        if self.config.select == "shortest":
            candidates.sort(key=lambda target: len(target.split()))
        kept = candidates if self.config.select == "all" else candidates[:1]
        self.counts["unselected"] += len(candidates) - len(kept)
        self.counts["kept"] += len(kept)
        self._seen.update((problem.question, target) for target in kept)
        return kept
