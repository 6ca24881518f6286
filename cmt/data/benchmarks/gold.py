"""Gold answers as benchmarks write them: after ``####``, as JSON numbers, with calculator annotations.

These read the *dataset's* notation, which is regular, so they are strict: a gold answer that does not
parse is an error naming the record, never a silently unanswerable problem.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from cmt.data.answers import parse_number
from cmt.data.benchmarks.source import BenchmarkSourceError, Record

# GSM8K's calculator annotations: "<<48/2=24>>" (expression, "=", result).
_ANNOTATION = re.compile(r"<<([^<>=]{0,200})=([^<>]{0,80})>>")
# One number and nothing else, once thousands separators, currency and spaces are gone.
_PLAIN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?")


def number_gold(value: Any, record: Record) -> str:
    """A numeric gold value as a plain decimal string: ``43.0`` -> ``"43"``, ``"2,125"`` -> ``"2125"``.

    JSON floats keep their shortest round-trip digits (``3244047.0999999996``) and never use exponents.

    Raises:
        BenchmarkSourceError: The value is not a finite number.
    """
    if isinstance(value, bool):
        raise BenchmarkSourceError(f"{record.where}: gold answer {value!r} is not a number")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BenchmarkSourceError(f"{record.where}: gold answer {value!r} is not a finite number")
        return str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")
    text = re.sub(r"[,$\s]", "", str(value))
    number = parse_number(text) if _PLAIN_NUMBER.fullmatch(text) else None
    if number is None:
        raise BenchmarkSourceError(f"{record.where}: gold answer {value!r} is not a number")
    return number.canonical()


def after_marker(solution: str, record: Record, marker: str = "####") -> str:
    """The numeric gold after the last ``marker`` of a worked solution, thousands separators removed.

    Raises:
        BenchmarkSourceError: The solution has no marker or no number after it.
    """
    if marker not in solution:
        raise BenchmarkSourceError(f"{record.where}: solution has no {marker!r} final-answer line")
    return number_gold(solution.rsplit(marker, 1)[1].strip(), record)


def intermediate_values(solution: str) -> list[float]:
    """The results of a solution's ``<<expr=result>>`` calculator annotations, in order (unparseable ones skipped)."""
    values = []
    for m in _ANNOTATION.finditer(solution):
        number = parse_number(m.group(2))
        if number is not None:
            values.append(float(number.value))
    return values


def strip_annotations(solution: str) -> str:
    """The solution as a reader sees it: calculator annotations removed."""
    return re.sub(r"<<[^<>]{0,300}>>", "", solution)
