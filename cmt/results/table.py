"""Result tables in the paper's layout, built from run-store rows (rendered by `cmt.results.render`).

Two layouts:

- ``paper_table``: one line per (model, method); one column per evaluated benchmark, then the averages of
  the in-distribution (ID) and out-of-distribution (OOD) columns. A cell holds the mean over seeds, the
  sample standard deviation when there are two seeds or more, and the difference from a baseline method of
  the same model (default ``cot_sft_rl``, the paper's "standard method"). The paper's reported numbers
  (``results/paper/reported.yaml``) are added as extra lines when the table covers the paper's benchmarks.
- ``method_table``: the methods of one model side by side: accuracy per column, the ID/OOD averages, and
  the mean ECE, overconfident-error rate and output length over all columns.

Which columns a table gets: `cmt.results.columns`. Rows hold fractions; tables show percentages (points).
Everything is plain Python: the tables are small (a pandas pivot would not shorten the per-seed averaging
that leaves out a seed missing a member). The names of `cmt.results.columns` and `cmt.results.render` that
callers used to import from here still import from here.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from cmt.results.columns import (
    PAPER_BENCHMARKS,
    PAPER_ID_BENCHMARKS,
    Cell,
    Column,
    Line,
    Table,
    average_columns,
    benchmark_columns,
    norm,
    row_tag,
)
from cmt.results.render import METHOD_NAMES, RENDERERS, method_name, render, to_csv, to_latex, to_markdown

__all__ = [
    "BASELINE_FALLBACKS", "DEFAULT_PAPER_FILE", "METHOD_NAMES", "PAPER_AVERAGE_MODEL", "PAPER_BENCHMARKS",
    "PAPER_BEST_MODEL", "PAPER_ID_BENCHMARKS", "RENDERERS", "Cell", "Column", "Line", "Table", "add_deltas",
    "average_columns", "benchmark_columns", "build_lines", "choose_baseline", "experiment_labels", "filter_rows",
    "index_runs", "load_paper", "method_name", "method_rank", "method_table", "norm", "paper_lines", "paper_table",
    "render", "row_tag", "summarise", "to_csv", "to_latex", "to_markdown",
]

# Baselines tried in turn when the requested one has no rows for a model.
BASELINE_FALLBACKS = ("cot_sft_rl", "cot_sft", "base")
DEFAULT_PAPER_FILE = Path(__file__).resolve().parents[2] / "results" / "paper" / "reported.yaml"
PAPER_AVERAGE_MODEL = "paper: mean of 4 models"
PAPER_BEST_MODEL = "paper: best reported"


def filter_rows(rows: Iterable[dict[str, Any]], experiment: str | None = None, sweep: str | None = None,
                models: Sequence[str] | None = None, methods: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows matching every given filter (None or empty: no filter on that field)."""
    return [row for row in rows
            if (experiment is None or row.get("experiment") == experiment)
            and (sweep is None or row.get("sweep") == sweep)
            and (not models or row.get("model") in models)
            and (not methods or row.get("method") in methods)]


def experiment_labels(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """What tells the experiments of ``rows`` apart, when there are several (an ablation's sweep): each
    experiment's name after the part all of them share (``tiny_ablation_rl/grpo`` -> ``grpo``); empty for one."""
    names = sorted({str(row.get("experiment")) for row in rows})
    if len(names) < 2:
        return {}
    shared = 0
    while all(name.count("/") > shared for name in names) and \
            len({name.split("/")[shared] for name in names}) == 1:
        shared += 1
    return {name: "/".join(name.split("/")[shared:]) for name in names}


def index_runs(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[Any, dict[tuple[str, str], dict]]]:
    """Rows indexed as (model, method) -> seed -> (benchmark, split) -> row; a later row replaces an earlier one.

    The store is append-only, so a re-run of the same model, method, seed and split appends a newer row:
    the table shows the newest. Rows of several experiments (an ablation's sweep) are never merged: the
    model of each line then carries its experiment's label, ``tiny [grpo]``.
    """
    rows = list(rows)
    labels = experiment_labels(rows)
    index: dict[tuple[str, str], dict[Any, dict[tuple[str, str], dict]]] = {}
    for row in rows:
        model = str(row["model"])
        if labels:
            model = f"{model} [{labels[str(row.get('experiment'))]}]"
        by_seed = index.setdefault((model, str(row["method"])), {})
        by_seed.setdefault(row.get("seed"), {})[(str(row["benchmark"]), str(row["split"]))] = row
    return index


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def summarise(seed_runs: dict[Any, dict[tuple[str, str], dict]], column: Column) -> Cell:
    """A column's cell for one (model, method): per seed the mean of its members, then mean and std over seeds.

    A seed missing any member (or whose value is absent or NaN) is left out, so every averaged seed covers
    the same benchmarks.
    """
    values = []
    for run in seed_runs.values():
        members = [_number(run[pair].get(column.metric)) if pair in run else None for pair in column.members]
        if members and all(value is not None for value in members):
            values.append(column.scale * sum(members) / len(members))
    if not values:
        return Cell(None)
    std = statistics.stdev(values) if len(values) > 1 else None
    return Cell(statistics.fmean(values), std, len(values))


def method_rank(method: str) -> tuple[int, str]:
    """Sort key putting the known methods in pipeline order, then the others alphabetically."""
    known = list(METHOD_NAMES)
    return (known.index(method), "") if method in known else (len(known), method)


def choose_baseline(methods: Iterable[str], requested: str | None) -> str | None:
    """The baseline among ``methods``: ``requested`` when present, else the first fallback present, else None."""
    present = set(methods)
    if requested is None:
        return None
    for candidate in (requested, *BASELINE_FALLBACKS):
        if candidate in present:
            return candidate
    return None


def add_deltas(lines: list[Line], columns: Sequence[Column], requested: str | None) -> list[str]:
    """Fill each cell's difference from the baseline line of the same model, for accuracy columns.

    Returns:
        Notes for our models whose baseline differs from the requested one (or that have none).
    """
    notes = []
    by_model: dict[str, dict[str, Line]] = {}
    for line in lines:
        by_model.setdefault(line.model, {})[line.method] = line
    for model, methods in by_model.items():
        baseline = choose_baseline(methods, requested)
        ours = any(line.source == "ours" for line in methods.values())
        if ours and requested is not None and baseline != requested:
            notes.append(f"{model}: no {requested} rows, deltas against {baseline}" if baseline
                         else f"{model}: no baseline method among {', '.join(sorted(methods))}, no deltas")
        if baseline is None:
            continue
        reference = methods[baseline]
        for method, line in methods.items():
            if method == baseline:
                continue
            for column, cell, ref in zip(columns, line.cells, reference.cells, strict=True):
                if column.metric == "accuracy" and cell.mean is not None and ref.mean is not None:
                    cell.delta = cell.mean - ref.mean
    return notes


def build_lines(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> list[Line]:
    """One line per (model, method) of ``rows``, models alphabetically, methods in pipeline order."""
    index = index_runs(rows)
    keys = sorted(index, key=lambda key: (key[0], method_rank(key[1])))
    return [Line(model, method, [summarise(index[(model, method)], c) for c in columns], len(index[(model, method)]))
            for model, method in keys]


def load_paper(path: str | Path = DEFAULT_PAPER_FILE) -> dict[str, Any]:
    """The paper's reported numbers (see ``results/paper/reported.yaml``).

    Raises:
        FileNotFoundError: No such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no paper numbers at {path}; pass --paper-file or --paper never")
    return yaml.safe_load(path.read_text())


def paper_lines(columns: Sequence[Column], paper: dict[str, Any]) -> list[Line]:
    """The paper's numbers as table lines: its four-model ID/OOD averages and its best score per benchmark."""
    lines = []
    averages: dict[str, dict[str, float]] = {}
    for entry in paper.get("averages", []):
        averages.setdefault(entry["method"], {})[entry["tag"]] = float(entry["value"])
    for method in sorted(averages, key=method_rank):
        cells = [Cell(averages[method].get(column.tag)) if column.label == f"{column.tag}_avg" else Cell(None)
                 for column in columns]
        lines.append(Line(PAPER_AVERAGE_MODEL, method, cells, 0, source="paper (summary)"))
    best: dict[str, float] = {}
    for entry in paper.get("best_scores", []):
        key = norm(entry["benchmark"])
        best[key] = max(best.get(key, -math.inf), float(entry["value"]))
    cells = [Cell(best.get(norm(column.benchmark))) if column.benchmark else Cell(None) for column in columns]
    if any(cell.mean is not None for cell in cells):
        lines.append(Line(PAPER_BEST_MODEL, "comt_ccrl", cells, 0, source="paper (leaderboard)"))
    return lines


def paper_table(rows: Sequence[dict[str, Any]], benchmarks: Sequence[str] | None = None,
                baseline: str | None = "cot_sft_rl", paper: str = "auto",
                paper_file: str | Path = DEFAULT_PAPER_FILE, title: str = "Accuracy (%)") -> Table:
    """The paper's layout: (model, method) lines, benchmark columns, ID/OOD averages, deltas, paper numbers.

    Args:
        rows: Result rows (already filtered).
        benchmarks: Columns to show, in order (see `benchmark_columns`).
        baseline: Method the deltas are taken against (None: no deltas).
        paper: ``auto`` adds the paper's lines when a column is one of its benchmarks; ``always``; ``never``.
        paper_file: Where the paper's numbers are.
        title: Table title.

    Raises:
        ValueError: No rows, or an unknown ``paper`` mode.
    """
    if not rows:
        raise ValueError("no result rows to tabulate")
    if paper not in ("auto", "always", "never"):
        raise ValueError(f"paper={paper!r} is not one of auto, always, never")
    columns = benchmark_columns(rows, benchmarks)
    columns += average_columns(columns)
    lines = build_lines(rows, columns)
    notes = ["mean ± sample std over seeds" + (f"; (difference) in points against {baseline}" if baseline else "")]
    covers_paper = any(norm(c.benchmark) in PAPER_BENCHMARKS for c in columns if c.benchmark)
    if paper == "always" or (paper == "auto" and covers_paper):
        lines += paper_lines(columns, load_paper(paper_file))
        notes.append("paper lines: ID/OOD averages over its four students and own benchmark set (unverified "
                     "summary), best scores from a leaderboard (model not stated); sources in "
                     "results/paper/reported.yaml")
    notes += add_deltas(lines, columns, baseline)
    untagged = [c.label for c in columns if c.tag is None]
    if untagged:
        notes.append(f"not in the ID/OOD averages (no id/ood tag): {', '.join(untagged)}")
    if experiment_labels(rows):
        notes.append("rows from several experiments: each line's [label] names its experiment")
    return Table(title, columns, lines, notes)


def method_table(rows: Sequence[dict[str, Any]], model: str | None = None,
                 benchmarks: Sequence[str] | None = None) -> Table:
    """Methods of one model side by side: accuracy per column and ID/OOD averages, then calibration, length
    and, where the rows carry them, training cost (the efficiency comparison of CoMT against CoT).

    ECE, overconfident-error rate (both in %) and mean output tokens are averaged over all the columns.
    Training seconds and tokens are the method's own training stage (SFT: target tokens; RL: rollout
    tokens), so an RL line does not include the SFT it started from.

    Raises:
        ValueError: No rows, or several models and ``model`` not given (or not present).
    """
    models = sorted({str(row["model"]) for row in rows})
    if model is None and len(models) > 1:
        raise ValueError(f"the rows hold several models ({', '.join(models)}); choose one with --model")
    model = model if model is not None else (models[0] if models else None)
    rows = [row for row in rows if str(row["model"]) == model]
    if not rows:
        raise ValueError(f"no result rows for model {model!r}" + (f"; there are {', '.join(models)}" if models else ""))
    accuracy = benchmark_columns(rows, benchmarks)
    members = tuple(pair for column in accuracy for pair in column.members)
    extra = [Column("ece", "ECE", members, metric="ece"),
             Column("overconfident_error_rate", "Overconf. err.", members, metric="overconfident_error_rate"),
             Column("mean_output_tokens", "Out. tokens", members, metric="mean_output_tokens", scale=1.0, digits=1)]
    notes = ["accuracy, ECE and overconfident errors in %, mean ± sample std over seeds; "
             "ECE, overconfident errors and output tokens averaged over all columns"]
    if any(_number(row.get("train_time_s")) is not None for row in rows):
        extra += [Column("train_time_s", "Train s", members, metric="train_time_s", scale=1.0, digits=0),
                  Column("train_tokens", "Train k tokens", members, metric="train_tokens", scale=1e-3, digits=0)]
        notes.append("training seconds and thousands of tokens of the method's own stage (SFT: target tokens, "
                     "RL: rollout tokens)")
    columns = accuracy + average_columns(accuracy) + extra
    return Table(f"Methods on {model}", columns, build_lines(rows, columns), notes)
