"""AQuA-RAT (Ling et al., 2017): algebra word problems with five lettered options; an extra benchmark.

Records: ``question``, ``options`` (``["A)21", "B)21.5", ...]``), ``rationale``, ``correct`` (the letter).
The model sees the question followed by ``Answer Choices: (A) 21 (B) 21.5 ...``; the gold is the letter,
and ``meta["choices"]`` holds the option texts so that an answer naming the option's text counts too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cmt.data.benchmarks.source import BenchmarkSourceError, Record, load_problems
from cmt.data.problem import Problem

_PREFIX = re.compile(r"^\s*\(?([A-Ea-e])\)\s*")


def parse(record: Record, index: int, split: str = "test", fields: Mapping[str, str] | None = None) -> Problem:
    """One AQuA record as a :class:`Problem` (id ``<split>-<index>``).

    Raises:
        BenchmarkSourceError: The record lacks a field, or its options or letter are malformed.
    """
    options = record.get("options", ["options"], fields)
    letters = [m.group(1).upper() if (m := _PREFIX.match(str(o))) else None for o in options]
    if letters != list("ABCDE"[:len(options)]):
        raise BenchmarkSourceError(f"{record.where}: options are not lettered A), B), ...: {options!r}")
    choices = [_PREFIX.sub("", str(o)).strip() for o in options]
    gold = str(record.get("answer", ["correct"], fields)).strip().upper()
    if gold not in letters:
        raise BenchmarkSourceError(f"{record.where}: correct option {gold!r} is not one of {letters}")
    question = str(record.get("question", ["question"], fields)).strip()
    options_line = " ".join(f"({letter}) {text}" for letter, text in zip(letters, choices, strict=True))
    rendered = f"{question}\nAnswer Choices: {options_line}"
    meta = {"answer_type": "choice", "choices": choices, "source": record.where}
    if record.data.get("rationale") is not None:
        meta["rationale"] = record.data["rationale"]
    return Problem(id=f"{split}-{index:04d}", question=rendered, gold=gold, meta=meta)


def load(split: str, n: int | None = None, *, fields: Mapping[str, str] | None = None, **source: Any) -> list[Problem]:
    """AQuA problems of ``split`` (``test`` or ``dev``, 254 each).

    Args:
        split: ``test`` or ``dev``.
        n, fields, **source: As :func:`cmt.data.benchmarks.gsm8k.load`.
    """
    return load_problems("aqua", split, n, lambda r, i: parse(r, i, split, fields), **source)
