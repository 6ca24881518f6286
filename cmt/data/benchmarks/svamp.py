"""SVAMP (Patel et al., 2021): one-step problems varied to defeat shallow heuristics; in-distribution here.

The paper lists "SVAMP (test)": the 700/300 train/test split of the hub copy (``ChilleD/SVAMP``), whose
``test`` split is evaluated by default; locally only the whole official set is available (split ``all``).

Read from the official ``SVAMP.json`` (``ID, Body, Question, Equation, Answer, Type``; the hub copy has the
same fields) or from PAL's flattened ``{input, target}`` file. The question is ``Body`` then ``Question``;
when ``Body`` lacks a closing period one is added, as PAL does, so the two sentences read as two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cmt.data.benchmarks.gold import number_gold
from cmt.data.benchmarks.source import Record, load_problems
from cmt.data.problem import Problem


def join_sentences(body: str, question: str) -> str:
    """``body`` and ``question`` as one text, with a period between them when ``body`` has no end mark."""
    body, question = body.strip(), question.strip()
    if body and body[-1] not in ".?!":
        body += "."
    return f"{body} {question}".strip()


def parse(record: Record, index: int, fields: Mapping[str, str] | None = None) -> Problem:
    """One SVAMP record (official or PAL format) as a :class:`Problem` (official ``ID`` kept as id).

    Raises:
        BenchmarkSourceError: The record lacks a field or its answer is not a number.
    """
    body = record.get("body", ["Body"], fields, required=False)
    if body is not None:
        question = join_sentences(str(body), str(record.get("question", ["Question"], fields)))
    else:
        question = str(record.get("question", ["input", "question_concat"], fields)).strip()
    native = record.get("id", ["ID"], fields, required=False)
    return Problem(
        id=str(native) if native is not None else f"svamp-{index:04d}",
        question=question,
        gold=number_gold(record.get("answer", ["Answer", "target"], fields), record),
        meta={key: record.data[field] for key, field in (("equation", "Equation"), ("type", "Type"))
              if field in record.data} | {"source": record.where},
    )


def load(split: str, n: int | None = None, *, fields: Mapping[str, str] | None = None, **source: Any) -> list[Problem]:
    """SVAMP problems of ``split``.

    Args:
        split: ``all`` (the 1000 problems of the official file), or the hub copy's ``train`` (700) / ``test``
            (300) split (SVAMP itself has no official split).
        n, fields, **source: As :func:`cmt.data.benchmarks.gsm8k.load`.
    """
    return load_problems("svamp", split, n, lambda r, i: parse(r, i, fields), **source)
