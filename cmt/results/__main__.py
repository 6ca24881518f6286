"""Command line of the results layer: tables, plots and the W&B comparison, from the run store or from W&B.

    python -m cmt.results table [--experiment NAME] [--sweep NAME] [--store PATH] [--format md|latex|csv]
                                [--out FILE] [--baseline METHOD] [--layout paper|methods] [--model NAME]
    python -m cmt.results table experiment=paper_main          # Hydra-style filters work too
    python -m cmt.results plots [filters] [--out-dir DIR] [--predictions FILE_OR_DIR ...]
    python -m cmt.results wandb [filters] [--project cmt] [--entity NAME] [--report] [--offline]
    python -m cmt.results failures [filters]                   # the failed jobs of a sweep, one line each

The store defaults to ``$CMT_RESULTS/runs.jsonl`` (``results/runs/runs.jsonl``), as written by the stages.
Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cmt.results import table as tables
from cmt.results.store import read_rows

# Filters that may be written Hydra-style (experiment=NAME) as well as --experiment NAME.
HYDRA_STYLE = ("experiment", "sweep", "model", "method")
PRODUCERS = ("`python run.py` (the default pipeline evaluates base and comt_sft) or "
             "`python run.py stage=eval eval.methods=[base,comt_sft]`")


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def default_store() -> Path:
    """The run store the stages write to: ``$CMT_RESULTS/runs.jsonl``, else ``results/runs/runs.jsonl``."""
    return Path(os.environ.get("CMT_RESULTS", "results/runs")) / "runs.jsonl"


def _store_path(value: str | None) -> Path:
    path = Path(value) if value else default_store()
    return path / "runs.jsonl" if path.is_dir() else path


def _list(values: Sequence[str] | None) -> list[str]:
    """Repeated and comma-separated option values, flattened."""
    return [item for value in values or [] for item in value.split(",") if item]


def _describe(rows: Sequence[dict[str, Any]]) -> str:
    parts = []
    for field in ("experiment", "sweep", "model", "method"):
        values = sorted({str(row.get(field)) for row in rows})
        parts.append(f"{field}s: {', '.join(values)}")
    return "; ".join(parts)


def store_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The filtered rows of the local store.

    Raises:
        CliError: The store is empty, or nothing matches the filters.
    """
    path = _store_path(args.store)
    rows = read_rows(path)
    if not rows:
        raise CliError(f"no result rows in {path}; produce some with {PRODUCERS}, or pass --store")
    return select(rows, args, str(path))


def select(rows: Sequence[dict[str, Any]], args: argparse.Namespace, where: str) -> list[dict[str, Any]]:
    """``rows`` filtered by the command's filters.

    Raises:
        CliError: Nothing matches (the message lists what there is).
    """
    chosen = tables.filter_rows(rows, args.experiment, args.sweep, _list(args.model), _list(args.method))
    if not chosen:
        raise CliError(f"no rows in {where} match the filters; there are {_describe(rows)}")
    return chosen


def build_table(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> tables.Table:
    """The table the command asks for (``--layout``)."""
    benchmarks = _list(args.benchmarks) or None
    if args.layout == "methods":
        models = _list(args.model)
        return tables.method_table(rows, models[0] if len(models) == 1 else None, benchmarks)
    baseline = None if args.baseline == "none" else args.baseline
    return tables.paper_table(rows, benchmarks, baseline, args.paper, args.paper_file)


def emit(text: str, out: str | None) -> None:
    """Print ``text``, or write it to ``out`` (creating folders) and say where."""
    if out is None:
        sys.stdout.write(text)
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}", file=sys.stderr)


def cmd_table(args: argparse.Namespace) -> None:
    """Render a table of the local store."""
    emit(tables.render(build_table(store_rows(args), args), args.format), args.out)


def _prediction_files(sources: Sequence[str]) -> dict[str, Path]:
    """Panel title -> predictions file, for files and folders (searched recursively) of ``*.jsonl``."""
    files: dict[str, Path] = {}
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files.update({str(p.relative_to(path).with_suffix("")): p for p in sorted(path.rglob("*.jsonl"))})
        elif path.is_file():
            files[f"{path.parent.name}/{path.stem}"] = path
        else:
            raise CliError(f"no predictions file or folder at {source}")
    if not files:
        raise CliError(f"no *.jsonl predictions under {', '.join(sources)}; eval jobs write them to "
                       "<job folder>/predictions/<method>/ when eval.save_predictions=true")
    return files


def cmd_plots(args: argparse.Namespace) -> None:
    """Write the PNG plots of the local store (and reliability diagrams of predictions files)."""
    from cmt.results import plots

    rows = store_rows(args)
    out = Path(args.out_dir)
    benchmarks = _list(args.benchmarks) or None
    written = [plots.accuracy_by_benchmark(rows, out / "accuracy_by_benchmark.png", benchmarks)]
    try:
        written.append(plots.accuracy_vs_tokens(rows, out / f"accuracy_vs_{args.tokens}.png", args.tokens, benchmarks))
    except ValueError as error:
        print(f"skipped accuracy against {args.tokens}: {error}", file=sys.stderr)
    if args.predictions:
        written.append(plots.reliability_diagram(_prediction_files(args.predictions), out / "reliability.png"))
    for path in written:
        print(path)


def cmd_wandb(args: argparse.Namespace) -> None:
    """Tables of the runs in W&B (or of the local store when W&B is not configured), and optionally a Report."""
    from cmt.results import wandb_report

    path = f"{args.entity}/{args.project}" if args.entity else args.project
    if args.offline:
        online = False
    else:
        from cmt.logging import wandb_configured

        online = wandb_configured()
    if not online:
        print("W&B is not configured (offline mode): the tables come from the local store "
              f"{_store_path(args.store)}", file=sys.stderr)
        rows = store_rows(args)
    else:
        import wandb

        try:
            fetched = wandb_report.fetch_rows(path, args.experiment, args.sweep)
        except (wandb.errors.Error, OSError, ValueError) as error:  # requests' errors are OSErrors
            raise CliError(f"reading W&B project {path} failed ({error}); --offline uses the local store") from error
        if not fetched:
            raise CliError(f"no runs with val/<method>/<benchmark>/<split>/accuracy summaries in W&B project {path}")
        rows = select(fetched, args, f"W&B project {path}")
    table = build_table(rows, args)
    emit(tables.render(table, args.format), args.out)
    if not args.report:
        return
    if not online:
        raise CliError("--report needs W&B credentials (WANDB_API_KEY or `wandb login`)")
    field, groups = (("sweep_name", [args.sweep]) if args.sweep else
                     ("experiment_name", sorted({str(row["experiment"]) for row in rows})))
    try:
        url = wandb_report.create_report(path, rows, groups, field, tables.to_markdown(table),
                                         args.title or f"cmt: {', '.join(groups)}")
    except wandb_report.ReportUnavailable as error:
        raise CliError(str(error)) from error
    print(f"report: {url}", file=sys.stderr)


def cmd_failures(args: argparse.Namespace) -> None:
    """List the failed jobs recorded beside the store (``failures.jsonl``), oldest first, one line each."""
    path = _store_path(args.store).parent / "failures.jsonl"
    failures = tables.filter_rows(read_rows(path), args.experiment, args.sweep, _list(args.model))
    if not failures:
        print(f"no failed jobs in {path}" + (" matching the filters" if path.is_file() else ""))
        return
    print(f"{len(failures)} failed job(s) in {path}:")
    for row in failures:
        overrides = " ".join(row.get("overrides") or []) or "(no overrides)"
        print(f"- {row.get('created_at', '?')} {row.get('experiment')}/{row.get('sweep')} stage={row.get('stage')} "
              f"{overrides}: {row.get('error_type')}: {row.get('error')} [{row.get('output_dir')}]")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", help="only rows of this experiment (experiment=NAME also works)")
    parser.add_argument("--sweep", help="only rows of this sweep")
    parser.add_argument("--model", action="append", help="only these models (repeat or comma-separate)")
    parser.add_argument("--method", action="append", help="only these methods (repeat or comma-separate)")
    parser.add_argument("--store", help="run store file or folder (default: $CMT_RESULTS/runs.jsonl, "
                                        "else results/runs/runs.jsonl)")
    parser.add_argument("--benchmarks", action="append",
                        help="columns to show, in order: benchmark names or split labels (comma-separated)")


def _add_table_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=sorted(tables.RENDERERS), default="md")
    parser.add_argument("--out", help="write here instead of stdout")
    parser.add_argument("--layout", choices=("paper", "methods"), default="paper",
                        help="paper: model x method lines, benchmark columns, ID/OOD averages, deltas; "
                             "methods: one model's methods with accuracy, ECE, overconfident errors, tokens")
    parser.add_argument("--baseline", default="cot_sft_rl",
                        help="method the deltas are taken against, or none (default: cot_sft_rl)")
    parser.add_argument("--paper", choices=("auto", "always", "never"), default="auto",
                        help="add the paper's reported numbers (auto: when a column is one of its benchmarks)")
    parser.add_argument("--paper-file", default=str(tables.DEFAULT_PAPER_FILE),
                        help="the paper's reported numbers (default: results/paper/reported.yaml)")


def make_parser() -> argparse.ArgumentParser:
    """The ``python -m cmt.results`` parser with its commands."""
    parser = argparse.ArgumentParser(prog="python -m cmt.results", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="a result table of the run store")
    _add_common(table)
    _add_table_options(table)
    table.set_defaults(run=cmd_table)
    plots = commands.add_parser("plots", help="PNG plots of the run store")
    _add_common(plots)
    plots.add_argument("--out-dir", default="results/plots")
    plots.add_argument("--tokens", default="train_tokens", choices=("train_tokens", "mean_output_tokens"),
                       help="x axis of the accuracy-against-tokens plot")
    plots.add_argument("--predictions", nargs="+",
                       help="predictions files (or folders of them) for reliability diagrams")
    plots.set_defaults(run=cmd_plots)
    wandb = commands.add_parser("wandb", help="tables from W&B runs (the local store offline), and a W&B Report")
    _add_common(wandb)
    _add_table_options(wandb)
    wandb.add_argument("--project", default="cmt")
    wandb.add_argument("--entity")
    wandb.add_argument("--report", action="store_true", help="also save a W&B Report comparing the groups")
    wandb.add_argument("--title", help="the report's title")
    wandb.add_argument("--offline", action="store_true", help="use the local store even when W&B is configured")
    wandb.set_defaults(run=cmd_wandb)
    failures = commands.add_parser("failures", help="the failed jobs recorded beside the run store")
    _add_common(failures)
    failures.set_defaults(run=cmd_failures)
    return parser


def hydra_style(argv: Sequence[str]) -> list[str]:
    """``experiment=NAME`` (and sweep, model, method) rewritten as ``--experiment NAME``."""
    out = []
    for token in argv:
        key, sep, value = token.partition("=")
        out += [f"--{key}", value] if sep and key in HYDRA_STYLE else [token]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = make_parser().parse_args(hydra_style(sys.argv[1:] if argv is None else argv))
    try:
        args.run(args)
    except (CliError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
