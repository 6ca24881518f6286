"""``stage=teach``: the teacher writes the CoMT and CoT training sets for the benchmark's training questions.

    python run.py stage=teach                                   # rule teacher, synthetic problems
    python run.py stage=teach teacher=openai teacher.base_url=http://127.0.0.1:8000/v1 teacher.model=NAME
    python run.py stage=teach teacher=llama3_1_70b benchmark=gsm8k   # the paper's teacher (docs/teachers.md)

A chat teacher (LLM) gets ``teach.n_samples`` answers per question and kind, through the on-disk cache
(`cmt.teachers.collect`): rerun the same command after a crash and it resumes. A trace teacher (``rule``)
writes one trace per question itself. Both pass the same filters (`cmt.teachers.filters`).

Output, per kind, at `cmt.artifacts.training_set_path`: one JSON line per kept trace,
``{id, question, target, kind, teacher, prompt_hash}`` (``prompt_hash`` is null for trace teachers), plus
``report.json`` (outcome counts per reason, mean target tokens) and the redacted config in that folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from cmt.artifacts import training_set_path
from cmt.data.problem import Problem
from cmt.data.suite import train_problems
from cmt.logging import log_metrics
from cmt.models import ModelNotFoundError, resolve_source
from cmt.results.store import write_jsonl
from cmt.stages.common import StageContext
from cmt.teachers.cache import ResponseCache
from cmt.teachers.chat import ChatTeacher
from cmt.teachers.collect import collect
from cmt.teachers.filters import REASONS, FilterConfig, Sample, Selector
from cmt.teachers.prompts import build_request, prompt_hash

# Per kind: per problem, the samples received and how many asked for never came.
Gathered = dict[str, list[tuple[list[Sample], int]]]


def cache_path(cache_dir: str, fingerprint: dict[str, Any]) -> Path:
    """The cache file of a teacher model: ``<cache_dir>/<model, as a file name>.jsonl``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(fingerprint.get("model", "teacher"))).strip("_.")
    return Path(cache_dir) / f"{slug or 'teacher'}.jsonl"


def _ask_chat_teacher(teacher: ChatTeacher, problems: Sequence[Problem], kinds: Sequence[str],
                      prompts: dict[str, Any], n: int, cache_dir: str, progress: bool) -> tuple[Gathered, dict]:
    """Every (problem, kind) answered through the cache; returns the samples and the collection stats."""
    fingerprint = teacher.fingerprint()
    requests = {kind: [build_request(fingerprint, prompts, kind, p.question, n) for p in problems] for kind in kinds}
    meta = {r.key: {"id": p.id, "kind": kind} for kind in kinds for p, r in zip(problems, requests[kind], strict=True)}
    with ResponseCache(cache_path(cache_dir, fingerprint)) as cache:
        if cache.dropped:
            print(f"teach: dropped a torn last line ({cache.dropped} bytes) of {cache.path}")
        try:
            got = collect(teacher, [r for kind in kinds for r in requests[kind]], cache, meta, progress)
        except KeyboardInterrupt:
            print(f"\nteach: interrupted; {len(cache)} answers are saved in {cache.path}: rerun the same "
                  "command to resume")
            raise
    gathered: Gathered = {}
    for kind in kinds:
        gathered[kind] = []
        for request in requests[kind]:
            result = got.results.get(request.key)
            samples = [Sample(t, f) for t, f in zip(result.texts, result.finish_reasons, strict=True)] if result else []
            gathered[kind].append((samples, n - len(samples)))
    stats = {"cache": str(cache.path), "cache_hits": got.hits, "requests": got.asked,
             "failed_requests": len(got.failures), "first_failure": next(iter(got.failures.values()), None)}
    return gathered, stats


def _ask_trace_teacher(teacher: Any, problems: Sequence[Problem], kinds: Sequence[str]) -> Gathered:
    """One trace per (problem, kind) from a teacher that writes them itself (None counts as failed)."""
    gathered: Gathered = {}
    for kind in kinds:
        gathered[kind] = [([Sample(t)], 0) if t else ([], 1) for t in teacher.write(problems, kind)]
    return gathered


def _token_counter(cfg) -> tuple[Callable[[str], int], str]:
    """Counts target tokens with the student's tokenizer when it is on disk, else words; returns the unit."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_source(cfg.model), local_files_only=True)
    except (ModelNotFoundError, OSError, ValueError):
        return (lambda text: len(text.split())), "words"
    return (lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)), f"{cfg.model.name} tokens"


def _summary(report: dict[str, Any], kinds: Sequence[str]) -> str:
    """The end-of-run table: outcomes per reason and mean target length, per kind."""
    columns = ["kept", *REASONS, "mean_tokens"]
    lines = [f"teach summary: teacher={report['teacher']}, {report['questions']} questions x "
             f"{report['n_samples']} sample(s); lengths in {report['token_unit']}",
             "kind  " + " ".join(f"{c:>12}" for c in columns)]
    for kind in kinds:
        row = report[kind]
        lines.append(f"{kind:<5} " + " ".join(f"{row[c]:>12.1f}" if c == "mean_tokens" else f"{row[c]:>12d}"
                                             for c in columns))
    if "comt_cot_token_ratio" in report:
        lines.append(f"CoMT/CoT mean target length: {report['comt_cot_token_ratio']:.2f} (the paper reports about 0.5)")
    if report.get("failed_requests"):
        lines.append(f"{report['failed_requests']} requests failed after every retry (first: "
                     f"{report['first_failure']}); rerun the same command to ask again")
    return "\n".join(lines)


def run(ctx: StageContext) -> dict[str, float]:
    """Write the training set of each kind in ``teach.kinds``; returns outcome counts and mean lengths.

    Raises:
        TeacherError: The teacher cannot answer (unreachable, key missing or refused, unknown model).
    """
    cfg = ctx.cfg
    teach = cfg.teach
    kinds = list(teach.kinds)
    filters = FilterConfig(int(teach.filters.max_words), tuple(teach.filters.allowed_numbers), str(teach.select))
    problems = train_problems(cfg.benchmark, teach.n)
    teacher = instantiate(cfg.teacher)
    prompts = OmegaConf.to_container(teach.prompts, resolve=True)
    chat = isinstance(teacher, ChatTeacher)
    n = int(teach.n_samples) if chat else 1
    if chat:
        gathered, stats = _ask_chat_teacher(teacher, problems, kinds, prompts, n, teach.cache_dir, teach.progress)
    else:
        gathered, stats = _ask_trace_teacher(teacher, problems, kinds), {}
    count, unit = _token_counter(cfg)
    report: dict[str, Any] = {"teacher": teacher.name, "questions": len(problems), "n_samples": n,
                              "token_unit": unit, **stats}
    answer_type = str(cfg.benchmark.get("answer_type", "number"))
    for kind in kinds:
        selector = Selector(kind, filters, answer_type)
        hashed = prompt_hash(prompts, kind) if chat else None
        records = [{"id": p.id, "question": p.question, "target": target, "kind": kind, "teacher": teacher.name,
                    "prompt_hash": hashed}
                   for p, (samples, missing) in zip(problems, gathered[kind], strict=True)
                   for target in selector.select(p, samples, missing)]
        path = training_set_path(cfg, kind)
        write_jsonl(path, records)
        lengths = [count(r["target"]) for r in records]
        report[kind] = {**selector.counts, "mean_tokens": sum(lengths) / max(len(lengths), 1),
                        "mean_words": sum(len(r["target"].split()) for r in records) / max(len(records), 1)}
        print(f"teach: wrote {len(records)} {kind} traces to {path}")
    if {"comt", "cot"} <= set(kinds) and report["cot"]["mean_tokens"]:
        report["comt_cot_token_ratio"] = report["comt"]["mean_tokens"] / report["cot"]["mean_tokens"]
    folder = training_set_path(cfg, kinds[0]).parent
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    ctx.save_config(folder)
    print(_summary(report, kinds))
    metrics = {"teach/questions": float(len(problems))}
    for kind in kinds:
        metrics.update({f"teach/{kind}_{key}": float(value) for key, value in report[kind].items()})
    for key in ("comt_cot_token_ratio", "cache_hits", "requests", "failed_requests"):
        if key in report:
            metrics[f"teach/{key}"] = float(report[key])
    log_metrics(ctx.logger, metrics)
    return metrics
