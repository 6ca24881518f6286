"""TabMWP (Lu et al., 2023): math word problems over a small table; out-of-distribution here.

Records are PromptPG's (an object keyed by problem id): ``question, table_title, table`` (pipe-separated
text), ``unit``, ``choices``, ``answer`` (a string), ``ques_type``, ``ans_type``. The question shown to the
model has the table rendered in front of it, the unit after it and, for multiple choice, the options
lettered (A), (B), ... Answer types per problem (``meta["answer_type"]``):

- free-text numbers: ``number`` (``"4,656"``), or ``fraction`` when the gold is written ``3/4``;
- multiple choice (yes/no, extractive and other text such as ``"15 minutes"``): ``choice``, where a letter
  and the option's text are the same answer.

Only the official 1k subsets are available locally (``test1k``, ``dev1k``); the full test split comes
from the hub (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cmt.data.benchmarks.source import BenchmarkSourceError, Record, load_problems
from cmt.data.problem import Problem

LETTERS = "ABCDEFGHIJ"


def render(question: str, table: str, title: str | None = None, unit: str | None = None,
           choices: list[str] | None = None) -> str:
    """The text the model sees: table (with its title), question, unit, lettered options."""
    text = (f"Table: {title}\n{table}" if title else f"Table:\n{table}") + "\n\n" + question.strip()
    if unit:
        text += f" (Unit: {unit})"
    if choices:
        text += "\nOptions: " + " ".join(f"({LETTERS[i]}) {choice}" for i, choice in enumerate(choices))
    return text


def parse(record: Record, index: int, fields: Mapping[str, str] | None = None) -> Problem:
    """One TabMWP record as a :class:`Problem` (its problem id kept as id).

    Raises:
        BenchmarkSourceError: The record lacks a field, or a multiple-choice gold is not one of its options.
    """
    choices = record.get("choices", ["choices"], fields, required=False)
    choices = [str(c) for c in choices] if choices else None
    if choices and len(choices) > len(LETTERS):
        raise BenchmarkSourceError(f"{record.where}: {len(choices)} options, at most {len(LETTERS)} supported")
    gold = str(record.get("answer", ["answer"], fields)).strip()
    if choices:
        if gold not in choices:
            raise BenchmarkSourceError(f"{record.where}: gold {gold!r} is not one of the options {choices}")
        answer_type = "choice"
    else:
        answer_type = "fraction" if "/" in gold else "number"
    native = record.get("id", ["_key", "pid", "id"], fields, required=False)
    meta = {"answer_type": answer_type, "choices": choices, "source": record.where}
    for key in ("unit", "ques_type", "ans_type", "grade", "solution", "table_title"):
        if record.data.get(key) is not None:
            meta[key] = record.data[key]
    return Problem(
        id=str(native) if native is not None else f"tabmwp-{index:05d}",
        question=render(str(record.get("question", ["question"], fields)), str(record.get("table", ["table"], fields)),
                        record.data.get("table_title"), record.data.get("unit"), choices),
        gold=gold,
        meta=meta,
    )


def load(split: str, n: int | None = None, *, fields: Mapping[str, str] | None = None, **source: Any) -> list[Problem]:
    """TabMWP problems of ``split``.

    Args:
        split: ``test`` (7686, hub), ``test1k`` or ``dev1k`` (the official 1000-problem subsets, local files).
        n, fields, **source: As :func:`cmt.data.benchmarks.gsm8k.load`.
    """
    return load_problems("tabmwp", split, n, lambda r, i: parse(r, i, fields), **source)
