"""MATH-500 (Lightman et al., 2023): 500 competition problems of MATH's test split; an extra benchmark.

Records: ``problem, solution, answer`` (LaTeX, e.g. ``\\frac{14}{3}``, ``\\text{Evelyn}``), ``subject``,
``level``, ``unique_id``. Answers are LaTeX (``answer_type: latex``): compared as normalised LaTeX,
numerically when both sides are numbers, and with math-verify when installed (:mod:`cmt.data.answers`).
A record without ``answer`` (the full MATH files) takes the last ``\\boxed{}`` of its solution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cmt.data.answers import last_boxed
from cmt.data.benchmarks.source import BenchmarkSourceError, Record, load_problems
from cmt.data.problem import Problem


def parse(record: Record, index: int, fields: Mapping[str, str] | None = None) -> Problem:
    """One MATH record as a :class:`Problem` (``unique_id`` kept as id when present).

    Raises:
        BenchmarkSourceError: The record lacks a field, or has neither an answer nor a boxed solution.
    """
    solution = record.get("solution", ["solution"], fields, required=False)
    answer = record.get("answer", ["answer"], fields, required=False)
    if answer is None and solution is not None:
        answer = last_boxed(str(solution))
    if answer is None or not str(answer).strip():
        raise BenchmarkSourceError(f"{record.where}: no answer field and no \\boxed{{}} in the solution")
    native = record.get("id", ["unique_id", "idx"], fields, required=False)
    meta = {"answer_type": "latex", "source": record.where}
    for key in ("subject", "type", "level", "solution"):
        if record.data.get(key) is not None:
            meta[key] = record.data[key]
    return Problem(id=str(native) if native is not None else f"test-{index:04d}",
                   question=str(record.get("question", ["problem"], fields)).strip(), gold=str(answer).strip(),
                   meta=meta)


def load(split: str, n: int | None = None, *, fields: Mapping[str, str] | None = None, **source: Any) -> list[Problem]:
    """MATH-500 problems (split ``test``).

    Args:
        split: ``test``.
        n, fields, **source: As :func:`cmt.data.benchmarks.gsm8k.load`.
    """
    return load_problems("math500", split, n, lambda r, i: parse(r, i, fields), **source)
