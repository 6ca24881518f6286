"""``stage=eval``: evaluate checkpoints on every split of the benchmark and append result rows.

For each method in ``eval.methods`` (``base`` is the model as loaded), generate on each eval set (greedy,
or ``eval.samples`` samples per problem; with the Hugging Face loop or vLLM, ``eval.backend``; a method
trained to plan, then execute, generates that way: `cmt.trace`), score it, write the per-problem
predictions under the job folder, append one row per (method, split) to
the run store, and print a table: rows the methods, columns the splits.
"""

from __future__ import annotations

import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cmt import vllm_engine
from cmt.artifacts import require_checkpoint
from cmt.data.prompts import render_prompt
from cmt.data.suite import EvalSet, eval_sets
from cmt.eval import vllm_backend
from cmt.eval.evaluate import as_dicts
from cmt.eval.traced import evaluate_generated, evaluate_traced
from cmt.logging import log_metrics
from cmt.lora_merge import lora_mode, save_merged
from cmt.models import load_model, load_tokenizer, resolve_source
from cmt.precision import device_for
from cmt.results.store import append_rows, write_jsonl
from cmt.stages.common import StageContext
from cmt.trace import TraceProtocol


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
    # Fail on a missing checkpoint before any model or data loads (the settings were checked by validate_config).
    checkpoints = {name: require_checkpoint(cfg, name) for name in cfg.eval.methods}
    sets: list[EvalSet] = eval_sets(cfg.benchmark, cfg.eval.n)
    samples, temperature = int(cfg.eval.samples), float(cfg.eval.temperature)
    rows, metrics = [], {}
    # A method trained to plan, then execute, is evaluated that way (cmt/trace.py; trace.json beside it).
    traces = {name: TraceProtocol.load(checkpoint) for name, checkpoint in checkpoints.items()}
    for name, checkpoint in checkpoints.items():
        trace = traces[name]
        merged = None
        if cfg.eval.backend == "vllm":
            # vLLM loads the weights itself; the tokenizer renders prompts and reads answer confidence.
            adapter = checkpoint is not None and (checkpoint / "adapter_config.json").is_file()
            tokenizer = load_tokenizer(str(checkpoint) if checkpoint and not adapter else resolve_source(cfg.model))
            options = vllm_engine.engine_options(cfg.vllm, str(cfg.model.get("dtype", "auto")), int(cfg.seed))
            if adapter and lora_mode(cfg.vllm) == "merged":
                # The adapter folded into full weights in a scratch folder (cmt/lora_merge.py), removed below.
                peft_model, peft_tokenizer = load_model(cfg.model, checkpoint)
                merged = save_merged(peft_model, Path(cfg.paths.output_dir) / "vllm-merged" / name, peft_tokenizer)
                del peft_model
                model = vllm_backend.load(str(merged), None, options)
            else:
                model = vllm_backend.load(resolve_source(cfg.model), checkpoint, options)
        else:
            model, tokenizer = load_model(cfg.model, checkpoint)
            model.to(device_for(cfg.trainer.accelerator))
        for eval_set in sets:
            prompts = [render_prompt(p.question, cfg.prompt.template, tokenizer, cfg.prompt.use_chat_template,
                                     exemplars=cfg.prompt.exemplars, shots=int(cfg.prompt.shots),
                                     target_prefix=cfg.prompt.target_prefix)
                       for p in eval_set.problems]
            started = time.perf_counter()
            if isinstance(model, vllm_backend.Engine):
                generate = vllm_backend.generator(model, tokenizer, cfg.eval.max_new_tokens,
                                                  temperature if samples > 1 else 0.0, int(cfg.seed))
                values, scored = evaluate_generated(generate, tokenizer, eval_set.problems, prompts, trace,
                                                    cfg.eval.ece_bins, samples)
            else:
                values, scored = evaluate_traced(model, tokenizer, eval_set.problems, prompts, trace,
                                                 cfg.eval.max_new_tokens, cfg.eval.batch_size, cfg.eval.ece_bins,
                                                 desc=f"eval {name} {eval_set.benchmark}/{eval_set.split}",
                                                 samples=samples, temperature=temperature, seed=int(cfg.seed))
            values["eval_time_s"] = time.perf_counter() - started
            if cfg.eval.save_predictions:
                write_jsonl(Path(cfg.paths.output_dir) / "predictions" / name /
                            f"{eval_set.benchmark}-{eval_set.split}.jsonl", as_dicts(scored))
            training = ctx.training_cost(name)
            rows.append({
                **ctx.row_identity(), "method": name, "benchmark": eval_set.benchmark,
                "split": eval_set.split, "tag": eval_set.tag, **values,
                "train_time_s": training.get("train_time_s"), "train_tokens": training.get("train_tokens"),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            })
            for key, value in values.items():
                metrics[f"{name}/{eval_set.benchmark}/{eval_set.split}/{key}"] = value
        if isinstance(model, vllm_backend.Engine):
            vllm_engine.stop(model.llm)  # its memory is the next method's
        if merged is not None:
            shutil.rmtree(merged, ignore_errors=True)
        del model
    append_rows(Path(cfg.paths.results) / "runs.jsonl", rows)
    log_metrics(ctx.logger, {f"val/{k}": v for k, v in metrics.items()})
    print_table(rows, f"{cfg.model.name} on {cfg.benchmark.name}")
    return metrics
