"""PNG plots of results: accuracy per benchmark by method, reliability diagrams, accuracy against tokens.

Plots are drawn on ``matplotlib.figure.Figure`` objects, which render through the Agg canvas without
pyplot's global state, so they work headless and in parallel jobs. The aggregation (columns, means and
stds over seeds) is the tables' own (`cmt.results.columns`, `cmt.results.table`), so a plot and a table
never disagree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cmt.eval.calibration import expected_calibration_error
from cmt.results.columns import Column, average_columns, benchmark_columns
from cmt.results.render import method_name
from cmt.results.store import read_jsonl
from cmt.results.table import build_lines

# Reliability diagrams per row of the figure.
PANELS_PER_ROW = 5


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def accuracy_by_benchmark(rows: Sequence[dict[str, Any]], path: str | os.PathLike,
                          benchmarks: Sequence[str] | None = None) -> Path:
    """Grouped bars: accuracy (%) per benchmark column and ID/OOD average, one bar per method, one panel per model.

    Error bars are the sample std over seeds (none with a single seed).

    Raises:
        ValueError: No rows.
    """
    if not rows:
        raise ValueError("no result rows to plot")
    columns = benchmark_columns(rows, benchmarks)
    columns += average_columns(columns)
    lines = build_lines(rows, columns)
    models = list(dict.fromkeys(line.model for line in lines))
    figure = Figure(figsize=(max(6.0, 1.1 * len(columns) + 2), 3.2 * len(models)), layout="constrained")
    axes = figure.subplots(len(models), 1, squeeze=False)[:, 0]
    for ax, model in zip(axes, models, strict=True):
        mine = [line for line in lines if line.model == model]
        width = 0.8 / len(mine)
        for i, line in enumerate(mine):
            xs = [c + (i - (len(mine) - 1) / 2) * width for c in range(len(columns))]
            heights = [cell.mean or 0.0 for cell in line.cells]
            errors = [cell.std or 0.0 for cell in line.cells]
            ax.bar(xs, heights, width, yerr=errors, capsize=2, label=method_name(line.method))
        ax.set_xticks(range(len(columns)), [c.title for c in columns], rotation=30, ha="right")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(model)
        ax.legend(fontsize="small", ncols=min(len(mine), 5))
    return _save(figure, path)


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool],
                     bins: int = 10) -> list[tuple[int, float, float, int]]:
    """Per non-empty bin: (bin index, mean confidence, accuracy, count).

    Bins are the equal-width ``(low, high]`` bins of `cmt.eval.calibration.expected_calibration_error`
    (a confidence of exactly 0 falls in the first), so the diagram shows what the ECE averages.
    """
    members: dict[int, list[int]] = {}
    for i, confidence in enumerate(confidences):
        outside = 0 if confidence <= 0 else bins - 1
        b = next((b for b in range(bins) if b / bins < confidence <= (b + 1) / bins), outside)
        members.setdefault(b, []).append(i)
    return [(b, sum(confidences[i] for i in idx) / len(idx), sum(bool(correct[i]) for i in idx) / len(idx), len(idx))
            for b, idx in sorted(members.items())]


def read_predictions(path: str | os.PathLike) -> tuple[list[float], list[bool]]:
    """Confidences and correctness from a predictions file (JSON lines of `cmt.eval.evaluate.Scored`).

    Raises:
        ValueError: A record lacks ``confidence`` or ``correct``, or the file has no records.
    """
    records = read_jsonl(path)
    if not records:
        raise ValueError(f"{path}: no predictions")
    missing = [n for n, r in enumerate(records, start=1) if "confidence" not in r or "correct" not in r]
    if missing:
        raise ValueError(f"{path}:{missing[0]}: a prediction needs `confidence` and `correct` fields")
    return [float(r["confidence"]) for r in records], [bool(r["correct"]) for r in records]


def reliability_diagram(predictions: Mapping[str, str | os.PathLike], path: str | os.PathLike,
                        bins: int = 10) -> Path:
    """One reliability diagram per predictions file (five a row): accuracy per confidence bin against the diagonal.

    Args:
        predictions: Panel title -> predictions file.
        path: PNG to write.
        bins: Equal-width confidence bins.

    Raises:
        ValueError: No predictions files, or one that cannot be read as predictions.
    """
    if not predictions:
        raise ValueError("no predictions files to plot")
    ncols = min(PANELS_PER_ROW, len(predictions))
    nrows = -(-len(predictions) // ncols)
    figure = Figure(figsize=(3.4 * ncols, 3.6 * nrows), layout="constrained")
    axes = list(figure.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[len(predictions):]:
        ax.set_visible(False)
    for ax, (title, source) in zip(axes, predictions.items(), strict=False):
        confidences, correct = read_predictions(source)
        stats = reliability_bins(confidences, correct, bins)
        ax.bar([(b + 0.5) / bins for b, *_ in stats], [acc for _, _, acc, _ in stats], 1 / bins,
               edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot([m for _, m, _, _ in stats], [acc for _, _, acc, _ in stats], "o", color="black", ms=3,
                label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ece = expected_calibration_error(confidences, correct, bins)
        ax.set_title(f"{title}\nECE {100 * ece:.1f}%, n={len(confidences)}", fontsize="small")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
    for ax in axes[::ncols]:
        ax.set_ylabel("accuracy")
    axes[0].legend(fontsize="x-small", loc="upper left")
    return _save(figure, path)


def accuracy_vs_tokens(rows: Sequence[dict[str, Any]], path: str | os.PathLike, tokens: str = "train_tokens",
                       benchmarks: Sequence[str] | None = None) -> Path:
    """One point per (model, method): mean accuracy over the columns (%) against mean ``tokens`` over seeds.

    Args:
        rows: Result rows.
        path: PNG to write.
        tokens: The row field on the x axis (``train_tokens``, or ``mean_output_tokens``).
        benchmarks: Columns averaged (see `cmt.results.columns.benchmark_columns`).

    Raises:
        ValueError: No (model, method) has both an accuracy and a token count.
    """
    if not rows:
        raise ValueError("no result rows to plot")
    members = tuple(pair for column in benchmark_columns(rows, benchmarks) for pair in column.members)
    columns = [Column("accuracy", "accuracy", members), Column(tokens, tokens, members, metric=tokens, scale=1.0)]
    points = [(line, line.cells[1].mean, line.cells[0].mean) for line in build_lines(rows, columns)
              if line.cells[0].mean is not None and line.cells[1].mean]
    if not points:
        raise ValueError(f"no rows have both accuracy and {tokens}; training stages record {tokens}")
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    for method in dict.fromkeys(line.method for line, _, _ in points):
        mine = [(x, y, line.model) for line, x, y in points if line.method == method]
        ax.scatter([x for x, _, _ in mine], [y for _, y, _ in mine], label=method_name(method))
        for x, y, model in mine:
            ax.annotate(model, (x, y), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(tokens.replace("_", " "))
    ax.set_ylabel("mean accuracy over benchmarks (%)")
    ax.legend(fontsize="small")
    return _save(figure, path)
