"""GSM-Hard (Gao et al., 2023, PAL): the GSM8K test questions with numbers replaced by large ones.

Records are ``{input, code, target}``: ``target`` was computed by running ``code`` (a PAL program, kept as
data in ``meta["code"]`` and never executed here) and is a float; 303 of 1319 are not whole numbers
(``3244047.0999999996``), which :func:`cmt.data.answers.is_correct` compares with tolerance and rounding.
Some targets are not sensible for their question (negative counts): a known caveat of the dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cmt.data.benchmarks.gold import number_gold
from cmt.data.benchmarks.source import Record, load_problems
from cmt.data.problem import Problem


def parse(record: Record, index: int, fields: Mapping[str, str] | None = None) -> Problem:
    """One GSM-Hard record as a :class:`Problem` (id: its position, which is its GSM8K test index).

    Raises:
        BenchmarkSourceError: The record lacks a field or its target is not a number.
    """
    code = record.get("code", ["code"], fields, required=False)
    return Problem(
        id=f"test-{index:05d}",
        question=str(record.get("question", ["input", "question"], fields)).strip(),
        gold=number_gold(record.get("answer", ["target", "answer"], fields), record),
        meta={"source": record.where} | ({"code": code} if code is not None else {}),
    )


def load(split: str, n: int | None = None, *, fields: Mapping[str, str] | None = None, **source: Any) -> list[Problem]:
    """GSM-Hard problems (split ``test``: 1319, in GSM8K test order).

    Args:
        split: ``test``.
        n, fields, **source: As :func:`cmt.data.benchmarks.gsm8k.load`.
    """
    return load_problems("gsm_hard", split, n, lambda r, i: parse(r, i, fields), **source)
