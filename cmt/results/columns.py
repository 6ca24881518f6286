"""The parts of a result table (`Column`, `Cell`, `Line`, `Table`) and the columns a set of run-store rows gets.

A benchmark with one evaluated split is one column named after the benchmark; a benchmark evaluated on
several splits (``synthetic``: id, ood_templates, ...) gets one column per split, named after the split
when it is the only benchmark of the table and ``benchmark/split`` otherwise. Each benchmark column is
tagged in-distribution (``id``) or out-of-distribution (``ood``) when its rows say so (`row_tag`), and
`average_columns` averages the columns of each tag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# The paper's benchmarks in its column order, keyed by normalised name (see `norm`), with display names; the
# sources available to us do not name its eighth, and MultiArith is our choice for it (conf/benchmark/paper.yaml).
PAPER_BENCHMARKS = {"gsm8k": "GSM8K", "svamp": "SVAMP", "asdiv": "ASDiv", "mawps": "MAWPS", "tabmwp": "TabMWP",
                    "gsmhard": "GSM-Hard", "gsmsymbolic": "GSM-Symbolic", "multiarith": "MultiArith"}
# The paper's in-distribution benchmarks; its other benchmarks are out-of-distribution.
PAPER_ID_BENCHMARKS = {"gsm8k", "svamp"}


def norm(name: Any) -> str:
    """A benchmark or column name lower-cased with punctuation removed (``GSM-Hard`` == ``gsm_hard``)."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def row_tag(row: dict[str, Any]) -> str | None:
    """The ID/OOD tag of a row: its ``tag`` field, else a split named id/ood, else the paper's assignment.

    Returns:
        ``"id"``, ``"ood"``, or None when nothing says (such columns are left out of the averages).
    """
    if row.get("tag") in ("id", "ood"):
        return row["tag"]
    split = str(row.get("split") or "").lower()
    if split == "id" or split.startswith("id_"):
        return "id"
    if split == "ood" or split.startswith("ood_"):
        return "ood"
    benchmark = norm(row.get("benchmark"))
    if benchmark in PAPER_BENCHMARKS:
        return "id" if benchmark in PAPER_ID_BENCHMARKS else "ood"
    return None


@dataclass(frozen=True)
class Column:
    """One table column: a metric averaged over member (benchmark, split) pairs, scaled for display.

    Attributes:
        label: Stable name (CSV header, ``--benchmarks`` selection).
        title: Header in Markdown and LaTeX.
        members: The (benchmark, split) pairs whose values are averaged, per seed.
        metric: The row field shown.
        tag: ``id``/``ood`` for benchmark columns, None when unknown.
        benchmark: The benchmark of a single-benchmark column (for the paper's best scores), else None.
        scale: Display factor (100 for fractions shown as percentages).
        digits: Decimals shown.
    """

    label: str
    title: str
    members: tuple[tuple[str, str], ...]
    metric: str = "accuracy"
    tag: str | None = None
    benchmark: str | None = None
    scale: float = 100.0
    digits: int = 2


@dataclass
class Cell:
    """A column's value for one line: mean and sample std over seeds, seeds counted, delta to the baseline."""

    mean: float | None
    std: float | None = None
    n: int = 0
    delta: float | None = None


@dataclass
class Line:
    """One table line: a (model, method) and its cells in column order; ``source`` says where numbers come from."""

    model: str
    method: str
    cells: list[Cell]
    seeds: int
    source: str = "ours"


@dataclass
class Table:
    """A built table, ready to render."""

    title: str
    columns: list[Column]
    lines: list[Line]
    notes: list[str] = field(default_factory=list)


def benchmark_columns(rows: Sequence[dict[str, Any]], order: Sequence[str] | None = None) -> list[Column]:
    """The accuracy columns of ``rows``: one per benchmark, or one per split of a multi-split benchmark.

    Args:
        rows: Result rows.
        order: Benchmark names or column labels to show, in this order (others are dropped); None shows
            every column, the paper's benchmarks first in its order, then the rest as first seen.

    Raises:
        ValueError: ``order`` names nothing present in ``rows``.
    """
    splits: dict[str, list[str]] = {}
    tags: dict[tuple[str, str], str | None] = {}
    for row in rows:
        pair = (str(row["benchmark"]), str(row["split"]))
        if pair not in tags:
            splits.setdefault(pair[0], []).append(pair[1])
            tags[pair] = row_tag(row)
    columns = []
    for benchmark, names in splits.items():
        for split in names:
            if len(names) == 1:
                label, title = benchmark, PAPER_BENCHMARKS.get(norm(benchmark), benchmark)
            else:
                label = title = split if len(splits) == 1 else f"{benchmark}/{split}"
            columns.append(Column(label, title, ((benchmark, split),), tag=tags[(benchmark, split)],
                                  benchmark=benchmark if len(names) == 1 else None))
    if order is None:
        paper_rank = {name: rank for rank, name in enumerate(PAPER_BENCHMARKS)}
        first_seen = {column.label: rank for rank, column in enumerate(columns)}
        return sorted(columns, key=lambda c: (paper_rank.get(norm(c.members[0][0]), len(paper_rank)),
                                              first_seen[c.label]))
    wanted = [norm(name) for name in order]

    def rank(column: Column) -> int | None:
        for key in (column.label, *(f"{b}/{s}" for b, s in column.members), column.members[0][0]):
            if norm(key) in wanted:
                return wanted.index(norm(key))
        return None

    chosen = sorted((c for c in columns if rank(c) is not None), key=rank)
    if not chosen:
        raise ValueError(f"none of the benchmarks {', '.join(order)} is in the rows; "
                         f"they have {', '.join(c.label for c in columns)}")
    return chosen


def average_columns(columns: Sequence[Column]) -> list[Column]:
    """The ID and OOD accuracy averages over ``columns`` (each only when it has members)."""
    averages = []
    for tag, title in (("id", "ID avg"), ("ood", "OOD avg")):
        members = tuple(pair for column in columns if column.tag == tag for pair in column.members)
        if members:
            averages.append(Column(f"{tag}_avg", title, members, tag=tag))
    return averages
