"""GSM-Plus (Li et al., 2024): 8 perturbations of GSM8K test questions; an extra robustness benchmark.

Records: ``question, solution, answer`` (a string), ``perturbation_type``, ``seed_question``,
``seed_answer``. Answers are numbers (decimals rounded to two places by the authors, a few fractions),
except the 300 "critical thinking" items, whose question lacks information and whose gold is the literal
``None``: those are ``text`` answers (``meta["answer_type"]``), right only when the model answers "None".
Locally only ``testmini`` (2400) is available; ``test`` (10552) comes from the hub.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cmt.data.benchmarks.gold import number_gold
from cmt.data.benchmarks.source import Record, load_problems
from cmt.data.problem import Problem


def parse(record: Record, index: int, split: str = "testmini", fields: Mapping[str, str] | None = None) -> Problem:
    """One GSM-Plus record as a :class:`Problem` (id ``<split>-<index>``).

    Raises:
        BenchmarkSourceError: The record lacks a field, or a non-``None`` answer is not a number.
    """
    answer = str(record.get("answer", ["answer"], fields)).strip()
    unanswerable = answer == "None"
    meta = {"answer_type": "text" if unanswerable else "number", "source": record.where}
    for key in ("perturbation_type", "seed_question", "seed_answer", "solution"):
        if record.data.get(key) is not None:
            meta[key] = record.data[key]
    return Problem(id=f"{split}-{index:05d}", question=str(record.get("question", ["question"], fields)).strip(),
                   gold=answer if unanswerable else number_gold(answer, record), meta=meta)


def load(split: str, n: int | None = None, *, fields: Mapping[str, str] | None = None, **source: Any) -> list[Problem]:
    """GSM-Plus problems of ``split`` (``testmini`` or ``test``).

    Args:
        split: ``testmini`` (2400, local and hub) or ``test`` (10552, hub only).
        n, fields, **source: As :func:`cmt.data.benchmarks.gsm8k.load`.
    """
    return load_problems("gsm_plus", split, n, lambda r, i: parse(r, i, split, fields), **source)
