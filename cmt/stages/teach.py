"""``stage=teach``: the teacher writes the CoMT and CoT training sets for the benchmark's training questions.

Output: one JSON line per kept trace, ``{id, question, target, kind, teacher}``, at the paths given by
`cmt.stages.common.training_set_path`; the SFT stages read them.
"""

from __future__ import annotations

from hydra.utils import instantiate

from cmt.data.suite import train_problems
from cmt.logging import log_metrics
from cmt.results.store import write_jsonl
from cmt.stages.common import StageContext, training_set_path
from cmt.teachers import KINDS


def run(ctx: StageContext) -> dict[str, float]:
    """Write both training sets; returns counts and mean trace lengths (words) per kind."""
    cfg = ctx.cfg
    problems = train_problems(cfg.benchmark, cfg.teach.n)
    teacher = instantiate(cfg.teacher)
    metrics: dict[str, float] = {"teach/questions": float(len(problems))}
    for kind in KINDS:
        traces = teacher.write(problems, kind)
        records = [{"id": p.id, "question": p.question, "target": t, "kind": kind, "teacher": teacher.name}
                   for p, t in zip(problems, traces) if t]
        path = training_set_path(cfg, kind)
        write_jsonl(path, records)
        metrics[f"teach/{kind}_kept"] = float(len(records))
        metrics[f"teach/{kind}_mean_words"] = sum(len(r["target"].split()) for r in records) / max(len(records), 1)
        print(f"teach: wrote {len(records)} {kind} traces to {path}")
    log_metrics(ctx.logger, metrics)
    return metrics
