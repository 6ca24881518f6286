"""``stage=eval``: evaluate checkpoints on every split of the benchmark and append result rows.

For each method in ``eval.methods`` (``base`` is the model as loaded), generate greedily on each eval set,
score it, write the per-problem predictions under the job folder, append one row per (method, split) to
the run store, and print a table: rows the methods, columns the splits.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cmt.data.prompts import render_prompt
from cmt.data.suite import EvalSet, eval_sets
from cmt.eval.evaluate import as_dicts, evaluate
from cmt.logging import log_metrics
from cmt.models import load_model
from cmt.results.store import append_rows, write_jsonl
from cmt.stages.common import StageContext, method, require_checkpoint


def print_table(rows: list[dict], title: str) -> None:
    """Accuracy per (method, split) as a terminal table, strict accuracy in brackets."""
    single = len({r["benchmark"] for r in rows}) == 1
    column = (lambda r: r["split"]) if single else (lambda r: f"{r['benchmark']}/{r['split']}")
    splits = list(dict.fromkeys(column(r) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells = {(r["method"], column(r)): r for r in rows}
    table = Table(title=title)
    table.add_column("method")
    for split in splits:
        table.add_column(split, justify="right")
    for name in methods:
        values = []
        for split in splits:
            row = cells.get((name, split))
            values.append("" if row is None else f"{100 * row['accuracy']:.1f} ({100 * row['accuracy_strict']:.1f})")
        table.add_row(name, *values)
    # Piped output (logs, CI) gets a wide table instead of Rich's 80-column truncation.
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    console.print("accuracy % (strict accuracy %) per split; rows appended to the run store")


def run(ctx: StageContext) -> dict[str, float]:
    """Evaluate every method of ``eval.methods``; returns ``<method>/<split>/<metric>`` values."""
    cfg = ctx.cfg
    # Fail on a missing checkpoint or an unknown method before any model or data loads.
    checkpoints = {name: require_checkpoint(cfg, method(name).name) for name in cfg.eval.methods}
    sets: list[EvalSet] = eval_sets(cfg.benchmark, cfg.eval.n)
    rows, metrics = [], {}
    for name, checkpoint in checkpoints.items():
        model, tokenizer = load_model(cfg.model, checkpoint)
        for eval_set in sets:
            prompts = [render_prompt(p.question, cfg.prompt.template, tokenizer, cfg.prompt.use_chat_template)
                       for p in eval_set.problems]
            started = time.perf_counter()
            values, scored = evaluate(model, tokenizer, eval_set.problems, prompts, cfg.eval.max_new_tokens,
                                      cfg.eval.batch_size, cfg.eval.ece_bins,
                                      desc=f"eval {name} {eval_set.benchmark}/{eval_set.split}")
            values["eval_time_s"] = time.perf_counter() - started
            if cfg.eval.save_predictions:
                write_jsonl(Path(cfg.paths.output_dir) / "predictions" / name /
                            f"{eval_set.benchmark}-{eval_set.split}.jsonl", as_dicts(scored))
            training = ctx.training.get(name, {})
            rows.append({
                **ctx.row_identity(), "method": name, "stage": cfg.stage.name, "benchmark": eval_set.benchmark,
                "split": eval_set.split, "tag": eval_set.tag, **values,
                "train_time_s": training.get("train_time_s"), "train_tokens": training.get("train_tokens"),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            })
            for key, value in values.items():
                metrics[f"{name}/{eval_set.benchmark}/{eval_set.split}/{key}"] = value
        del model
    append_rows(Path(cfg.paths.results) / "runs.jsonl", rows)
    log_metrics(ctx.logger, {f"val/{k}": v for k, v in metrics.items()})
    print_table(rows, f"{cfg.model.name} on {cfg.benchmark.name}")
    return metrics
