"""ASDiv (Miao et al., 2020): 2305 diverse primary-school problems; out-of-distribution here.

Three formats are read: the official XML (``<Problem ID><Body><Question><Answer>...``), the
lower-case JSON of the hub copy and of ToRA's 2215-problem file (``body, question, answer``), and PAL's
2096-problem ``{input, target}``. Official answers carry units in parentheses (``9 (apples)``), which are
dropped. Most golds are numbers; the rest keep their own answer type in ``meta["answer_type"]``:

- one number (``9 (apples)``, ``-(1/3)``): ``number``;
- several values (``5 (years old); 15 (years old)``), ratios (``3:4``), clock times (``3:30 p.m.``) and
  words (``Yes``, ``Mrs. Hilt``): ``text``, compared after :func:`cmt.data.answers.normalize_text`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cmt.data.benchmarks.gold import number_gold
from cmt.data.benchmarks.source import BenchmarkSourceError, Record, load_problems
from cmt.data.benchmarks.svamp import join_sentences
from cmt.data.problem import Problem

# A unit in parentheses has a letter in it: "(apples)", "(sq. ft)"; "(1/3)" is a number in parentheses.
_UNIT = re.compile(r"\((?=[^()]*[A-Za-z])[^()]*\)")


def parse_gold(answer: Any, record: Record) -> tuple[str, str]:
    """``(gold, answer_type)`` of an ASDiv answer: units dropped, ``number`` when one number is left.

    Raises:
        BenchmarkSourceError: The answer is empty.
    """
    if isinstance(answer, (int, float)):
        return number_gold(answer, record), "number"
    text = re.sub(r"\s+([;,])", r"\1", " ".join(_UNIT.sub(" ", str(answer)).split()))
    text = re.sub(r"\((-?[\d./]+)\)", r"\1", text).strip(" ;")
    if not text:
        raise BenchmarkSourceError(f"{record.where}: empty gold answer {answer!r}")
    try:
        return number_gold(text, record), "number"
    except BenchmarkSourceError:
        return text, "text"


def parse(record: Record, index: int, fields: Mapping[str, str] | None = None) -> Problem:
    """One ASDiv record (any of the three formats) as a :class:`Problem` (official ``ID`` kept as id).

    Raises:
        BenchmarkSourceError: The record lacks a field.
    """
    body = record.get("body", ["Body", "body"], fields, required=False)
    if body is not None:
        question = join_sentences(str(body), str(record.get("question", ["Question", "question"], fields)))
    else:
        question = str(record.get("question", ["input"], fields)).strip()
    answer = record.get("answer", ["Answer", "answer", "target"], fields)
    gold, answer_type = parse_gold(answer, record)
    native = record.get("id", ["ID", "idx"], fields, required=False)
    meta = {"answer_type": answer_type, "raw_answer": answer, "source": record.where}
    for key, candidates in (("solution_type", ("Solution-Type", "solution_type")), ("formula", ("Formula", "formula")),
                            ("grade", ("Grade",))):
        value = record.get(key, candidates, None, required=False)
        if value is not None:
            meta[key] = value
    return Problem(id=str(native) if native is not None else f"asdiv-{index:04d}", question=question, gold=gold,
                   meta=meta)


def load(split: str, n: int | None = None, *, fields: Mapping[str, str] | None = None, **source: Any) -> list[Problem]:
    """ASDiv problems (split ``test``: the whole corpus, as LLM papers evaluate it).

    Args:
        split: ``test``.
        n, fields, **source: As :func:`cmt.data.benchmarks.gsm8k.load`.
    """
    return load_problems("asdiv", split, n, lambda r, i: parse(r, i, fields), **source)
