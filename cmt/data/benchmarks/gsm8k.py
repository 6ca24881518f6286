"""GSM8K (Cobbe et al., 2021): grade-school word problems; the paper's main in-distribution benchmark.

Each record is ``{question, answer}``; ``answer`` is a worked solution with calculator annotations
(``<<48/2=24>>``) ending in ``#### 72``. The gold is the number after the last ``####``; the annotations'
results become ``meta["intermediate"]`` (the gold intermediate values CCRL's step rewards can use) and
the solution, annotations removed, ``meta["solution"]`` (the CoT-SFT target a teacher may start from).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cmt.data.benchmarks.gold import after_marker, intermediate_values, strip_annotations
from cmt.data.benchmarks.source import Record, load_problems
from cmt.data.problem import Problem


def parse(record: Record, index: int, split: str = "test", fields: Mapping[str, str] | None = None) -> Problem:
    """One GSM8K record as a :class:`Problem` (id ``<split>-<index>``).

    Raises:
        BenchmarkSourceError: The record lacks a field or its solution has no ``####`` answer.
    """
    solution = str(record.get("answer", ["answer"], fields))
    return Problem(
        id=f"{split}-{index:05d}",
        question=str(record.get("question", ["question"], fields)).strip(),
        gold=after_marker(solution, record),
        meta={"solution": strip_annotations(solution), "intermediate": intermediate_values(solution),
              "source": record.where},
    )


def load(split: str, n: int | None = None, *, fields: Mapping[str, str] | None = None, **source: Any) -> list[Problem]:
    """GSM8K problems of ``split`` (``train`` or ``test``).

    Args:
        split: ``train`` (7473 problems) or ``test`` (1319).
        n: How many (None: all), a seeded draw (:func:`cmt.data.benchmarks.source.take`).
        fields: Field-name overrides for hub copies with other names (``question``, ``answer``).
        **source: Where to read: ``path``, ``data_dir``, ``files``, ``hub``, ``subset_seed``
            (:func:`cmt.data.benchmarks.source.load_problems`).
    """
    return load_problems("gsm8k", split, n, lambda r, i: parse(r, i, split, fields), **source)
