"""MAWPS (Koncel-Kedziorski et al., 2016) and its subsets AddSub, SingleEq, SingleOp and MultiArith.

The copies LLM papers evaluate are ``{input, target}`` JSON Lines: ToRA's 2065-problem MAWPS file tags each
record with its subset (``type``: addsub, singleeq, singleop, multiarith), PAL ships one file per subset.
``subset`` keeps only one subset of a tagged file (records without a ``type`` are all kept), so the
``multiarith``, ``addsub`` and ``singleeq`` benchmarks use this loader on their own files, or on the
tagged MAWPS file with ``subset`` set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cmt.data.benchmarks.gold import number_gold
from cmt.data.benchmarks.source import Record, load_problems
from cmt.data.problem import Problem

SUBSETS = ("addsub", "singleeq", "singleop", "multiarith")


def parse(record: Record, index: int, subset: str | None = None,
          fields: Mapping[str, str] | None = None) -> Problem | None:
    """One record as a :class:`Problem`, or None when it belongs to another ``subset``.

    Raises:
        BenchmarkSourceError: The record lacks a field or its answer is not a number.
    """
    kind = record.get("type", ["type"], fields, required=False)
    if subset is not None and kind is not None and kind != subset:
        return None
    native = record.get("id", ["idx", "id", "iIndex"], fields, required=False)
    meta = {"source": record.where} | ({"subset": kind} if kind is not None else {})
    return Problem(
        id=f"{kind + '-' if kind else ''}{native if native is not None else index}",
        question=" ".join(str(record.get("question", ["input", "question", "sQuestion"], fields)).split()),
        gold=number_gold(record.get("answer", ["target", "final_ans", "lSolutions", "answer"], fields), record),
        meta=meta,
    )


def load(split: str, n: int | None = None, *, subset: str | None = None, name: str = "mawps",
         fields: Mapping[str, str] | None = None, **source: Any) -> list[Problem]:
    """MAWPS problems, or one subset's.

    Args:
        split: ``test`` (these benchmarks are evaluated whole).
        subset: One of :data:`SUBSETS` to keep only that subset of a ``type``-tagged file; None keeps all.
        name: The benchmark's name in messages (``multiarith`` when the MultiArith config uses this loader).
        n, fields, **source: As :func:`cmt.data.benchmarks.gsm8k.load`.

    Raises:
        ValueError: ``subset`` is not one of :data:`SUBSETS`.
    """
    if subset is not None and subset not in SUBSETS:
        raise ValueError(f"unknown MAWPS subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    return load_problems(name, split, n, lambda r, i: parse(r, i, subset, fields), **source)
