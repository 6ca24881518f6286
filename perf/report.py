"""The table: one row per measured quantity, ours beside the peer's, the ratio and the issue's goal.

Ratios are oriented so that above 1 means "ours is better" for speed (ours/peer throughput, peer/ours
time), and memory and the limit ratio are ours over theirs (at most 1, at most 1.15 are the goals).
Goals are reported, never asserted: a ``met`` of None means a side is missing.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FIELDS = ("section", "metric", "ours", "peer", "peer_name", "ratio", "ratio_means", "goal", "met")


@dataclass
class Row:
    section: str
    metric: str
    ours: float | None
    peer: float | None
    peer_name: str | None
    ratio: float | None
    ratio_means: str
    goal: str | None
    met: bool | None


def _get(results: dict[str, Any], bench: str, side: str, key: str) -> float | None:
    value = results.get(bench, {}).get(side, {}).get(key)
    return float(value) if isinstance(value, (int, float)) and not math.isnan(value) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _row(section, metric, ours, peer, peer_name, ratio, means, goal=None, at_least=None, at_most=None) -> Row:
    met = None
    if ratio is not None and (at_least is not None or at_most is not None):
        met = (at_least is None or ratio >= at_least) and (at_most is None or ratio <= at_most)
    return Row(section, metric, ours, peer, peer_name, ratio, means, goal, met)


def build_rows(results: dict[str, Any]) -> list[Row]:
    """The table's rows from ``{bench: {side: result}}`` (benches that did not run give no rows)."""
    rows: list[Row] = []
    if "sft" in results:
        ours, peer = _get(results, "sft", "ours", "tokens_per_s"), _get(results, "sft", "peer", "tokens_per_s")
        rows.append(_row("1 SFT", "non-padding tokens/s", ours, peer, "TRL SFTTrainer", _ratio(ours, peer),
                         "ours/TRL", ">= 1.3", at_least=1.3))
        ours, peer = _get(results, "sft", "ours", "peak_rss_mb"), _get(results, "sft", "peer", "peak_rss_mb")
        rows.append(_row("1 SFT", "peak RSS MiB", ours, peer, "TRL SFTTrainer", _ratio(ours, peer), "ours/TRL",
                         "<= 1.0", at_most=1.0))
        ours, peer = _get(results, "sft", "ours", "gpu_peak_mb"), _get(results, "sft", "peer", "gpu_peak_mb")
        if ours is not None:
            rows.append(_row("1 SFT", "peak GPU MiB", ours, peer, "TRL SFTTrainer", _ratio(ours, peer), "ours/TRL",
                             "<= 1.0", at_most=1.0))
        ours, peer = _get(results, "sft", "ours", "mfu"), _get(results, "sft", "peer", "mfu")
        if ours is not None:
            rows.append(_row("1 SFT", "MFU", ours, peer, "TRL SFTTrainer", _ratio(ours, peer), "ours/TRL"))
    if "rl" in results:
        ours, peer = _get(results, "rl", "ours", "step_s"), _get(results, "rl", "peer", "step_s")
        rows.append(_row("2 RL", "seconds per step", ours, peer, "TRL GRPOTrainer", _ratio(peer, ours),
                         "TRL/ours (speed-up)", ">= 1.5", at_least=1.5))
        ours, peer = _get(results, "rl", "ours", "peak_rss_mb"), _get(results, "rl", "peer", "peak_rss_mb")
        rows.append(_row("2 RL", "peak RSS MiB", ours, peer, "TRL GRPOTrainer", _ratio(ours, peer), "ours/TRL",
                         "<= 1.0", at_most=1.0))
        ours, peer = _get(results, "rl", "ours", "mfu"), _get(results, "rl", "peer", "mfu")
        if ours is not None:
            rows.append(_row("2 RL", "MFU", ours, peer, "TRL GRPOTrainer", _ratio(ours, peer), "ours/TRL"))
    if "limit" in results:
        ours, limit = _get(results, "rl", "ours", "step_s"), _get(results, "limit", "ours", "limit_s")
        rows.append(_row("3 RL limit", "step s vs generate + fwd/bwd s", ours, limit, "bare HF parts",
                         _ratio(ours, limit), "ours/limit", "<= 1.15", at_most=1.15))
        for key, label in (("generate_s", "  bare generate s"), ("forward_backward_s", "  bare forward+backward s")):
            rows.append(_row("3 RL limit", label, None, _get(results, "limit", "ours", key), "bare HF parts", None, ""))
        for key, label in (("generate_s", "  our sampling s"), ("score_s", "  our reward+ref+advantages s"),
                           ("update_s", "  our update s")):
            rows.append(_row("3 RL limit", label, _get(results, "rl", "ours", key), None, None, None, ""))
    rows += vllm_rows(results)
    if "eval" in results:
        ours, peer = _get(results, "eval", "ours", "problems_per_s"), _get(results, "eval", "peer", "problems_per_s")
        rows.append(_row("4 Eval", "problems/s", ours, peer, "lm-eval hf gsm8k", _ratio(ours, peer), "ours/lm-eval",
                         ">= 2.0", at_least=2.0))
        floor = _get(results, "limit", "ours", "eval_generate_s")
        if floor is not None:
            ours, peer = _get(results, "eval", "ours", "seconds"), _get(results, "eval", "peer", "seconds")
            rows.append(_row("4 Eval", "seconds vs bare generate s", ours, floor, "bare HF generate",
                             _ratio(ours, floor), "ours/generate"))
            rows.append(_row("4 Eval", "  lm-eval seconds vs bare generate s", None, peer, "lm-eval hf gsm8k",
                             _ratio(peer, floor), "lm-eval/generate"))
            rows.append(_row("4 Eval", "  bare prefill alone s", None,
                             _get(results, "limit", "ours", "eval_prefill_s"), "bare HF generate", None, ""))
        ours, peer = _get(results, "eval", "ours", "peak_rss_mb"), _get(results, "eval", "peer", "peak_rss_mb")
        rows.append(_row("4 Eval", "peak RSS MiB", ours, peer, "lm-eval hf gsm8k", _ratio(ours, peer),
                         "ours/lm-eval", "<= 1.0", at_most=1.0))
        rows += _accuracy_and_agreement(results, "eval", "4 Eval", "lm-eval hf gsm8k")
    if "eval_vllm" in results:
        rows += _eval_vllm_rows(results)
    if "comt" in results:
        comt = _get(results, "comt", "comt", "tokens_per_example")
        cot = _get(results, "comt", "cot", "tokens_per_example")
        rows.append(_row("5 CoMT vs CoT", "tokens per training example", comt, cot, "CoT", _ratio(comt, cot),
                         "CoMT/CoT (paper: about 0.5)"))
        comt = _get(results, "comt", "comt", "target_tokens_per_example")
        cot = _get(results, "comt", "cot", "target_tokens_per_example")
        rows.append(_row("5 CoMT vs CoT", "target tokens per example", comt, cot, "CoT", _ratio(comt, cot), "CoMT/CoT"))
        comt, cot = _get(results, "comt", "comt", "fit_s"), _get(results, "comt", "cot", "fit_s")
        rows.append(_row("5 CoMT vs CoT", "SFT seconds per epoch", comt, cot, "CoT", _ratio(comt, cot),
                         "CoMT/CoT (paper: 65-70% less)"))
    return rows


def _accuracy_and_agreement(results: dict[str, Any], bench: str, section: str, peer_name: str) -> list[Row]:
    """An eval comparison's accuracy and the fractions of problems where the two sides agree."""
    ours, peer = _get(results, bench, "ours", "accuracy"), _get(results, bench, "peer", "accuracy")
    rows = [_row(section, "accuracy (flexible)", ours, peer, peer_name, None, "")]
    for key, label in (("prompt_match", "same prompt text"),
                       ("generation_match", "same generation (cut at lm-eval stops)"),
                       ("answer_agreement_flexible", "same answer, flexible, on lm-eval's text"),
                       ("answer_agreement_strict", "same answer, strict, on lm-eval's text"),
                       ("peer_answered", "  lm-eval found an answer (flexible)")):
        value = _get(results, bench, "peer", key)
        rows.append(_row(section, label, None, value, peer_name, value, "fraction of problems"))
    return rows


def _eval_vllm_rows(results: dict[str, Any]) -> list[Row]:
    """Eval with vLLM: ours vs lm-eval's vllm backend (>= 1.0x), vs its hf backend (>= 2x, when ``eval`` ran)."""
    section, peer_name = "4 Eval vLLM", "lm-eval vllm gsm8k"
    ours = _get(results, "eval_vllm", "ours", "problems_per_s")
    peer = _get(results, "eval_vllm", "peer", "problems_per_s")
    rows = [_row(section, "problems/s", ours, peer, peer_name, _ratio(ours, peer), "ours/lm-eval", ">= 1.0",
                 at_least=1.0)]
    if "eval" in results:
        hf = _get(results, "eval", "peer", "problems_per_s")
        rows.append(_row(section, "problems/s vs lm-eval hf", ours, hf, "lm-eval hf gsm8k", _ratio(ours, hf),
                         "ours/lm-eval", ">= 2.0", at_least=2.0))
        built_in = _get(results, "eval", "ours", "problems_per_s")
        rows.append(_row(section, "  vs our built-in loop", ours, built_in, "ours, eval.backend=hf",
                         _ratio(ours, built_in), "vllm/hf"))
    ours, peer = _get(results, "eval_vllm", "ours", "seconds"), _get(results, "eval_vllm", "peer", "seconds")
    rows.append(_row(section, "seconds (generation + scoring)", ours, peer, peer_name, _ratio(peer, ours),
                     "lm-eval/ours"))
    rows.append(_row(section, "  our generation alone s", _get(results, "eval_vllm", "ours", "generate_s"), None,
                     None, None, ""))
    ours, peer = _get(results, "eval_vllm", "ours", "engine_start_s"), _get(results, "eval_vllm", "peer",
                                                                            "engine_start_s")
    rows.append(_row(section, "  engine start-up s (not timed above)", ours, peer, peer_name, None, ""))
    ours, peer = (_peak_with_engine(results, "eval_vllm", side) for side in ("ours", "peer"))
    rows.append(_row(section, "peak RSS MiB, engine process included", ours, peer, peer_name, _ratio(ours, peer),
                     "ours/lm-eval"))
    return rows + _accuracy_and_agreement(results, "eval_vllm", section, peer_name)


def _peak_with_engine(results: dict[str, Any], bench: str, side: str) -> float | None:
    """A side's peak memory with its engine's processes (`perf.measure.TreeRss`); a side without an engine
    process (TRL with transformers generate) has only its own."""
    return _get(results, bench, side, "peak_tree_rss_mb") or _get(results, bench, side, "peak_rss_mb")


# What a side sampled with, as the table names it.
SAMPLERS = {"hf": "transformers generate", "vllm": "vLLM colocate"}


def vllm_rows(results: dict[str, Any]) -> list[Row]:
    """Rows of the RL step with vLLM rollouts (``rl_vllm``, ``limit_vllm``): against TRL (named with the
    sampler its side used), against our built-in sampler's step (``rl``), and against the bare vLLM parts."""
    rows: list[Row] = []
    ours = _get(results, "rl_vllm", "ours", "step_s")
    if "rl_vllm" in results:
        sampler = results["rl_vllm"].get("peer", {}).get("sampler")
        trl = f"TRL GRPOTrainer, {SAMPLERS.get(sampler, sampler)}" if sampler else "TRL GRPOTrainer"
        peer = _get(results, "rl_vllm", "peer", "step_s")
        rows.append(_row("2 RL vLLM", "seconds per step", ours, peer, trl, _ratio(peer, ours),
                         "TRL/ours (speed-up)", ">= 1.5", at_least=1.5))
        built_in = _get(results, "rl", "ours", "step_s")
        if built_in is not None:
            rows.append(_row("2 RL vLLM", "  vs ours with the built-in sampler", ours, built_in,
                             "ours, built-in sampler", _ratio(built_in, ours), "built-in/vLLM (speed-up)"))
        tree = {side: _peak_with_engine(results, "rl_vllm", side) for side in ("ours", "peer")}
        rows.append(_row("2 RL vLLM", "peak RSS MiB, engine process included", tree["ours"], tree["peer"], trl,
                         _ratio(tree["ours"], tree["peer"]), "ours/TRL"))
        for key, label in (("engine_start_s", "  our engine start s (once, not in a step)"),
                           ("is_mismatch_mean", "  our mean |log-prob| engine vs trainer")):
            rows.append(_row("2 RL vLLM", label, _get(results, "rl_vllm", "ours", key), None, None, None, ""))
    if "limit_vllm" in results:
        limit = _get(results, "limit_vllm", "ours", "limit_s")
        rows.append(_row("3 RL vLLM limit", "step s vs vLLM generate + fwd/bwd + sync s", ours, limit,
                         "bare vLLM parts", _ratio(ours, limit), "ours/limit", "<= 1.15", at_most=1.15))
        for key, label in (("generate_s", "  bare vLLM generate s"),
                           ("forward_backward_s", "  bare forward+backward s"), ("sync_s", "  bare weight sync s")):
            rows.append(_row("3 RL vLLM limit", label, None, _get(results, "limit_vllm", "ours", key),
                             "bare vLLM parts", None, ""))
        for key, label in (("generate_s", "  our sampling s (sync included)"), ("sync_s", "  our weight sync s"),
                           ("score_s", "  our reward+IS+ref+advantages s"), ("update_s", "  our update s")):
            rows.append(_row("3 RL vLLM limit", label, _get(results, "rl_vllm", "ours", key), None, None, None, ""))
    return rows


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def render(rows: list[Row]) -> str:
    """A plain-text table (one line per row)."""
    header = ("section", "metric", "ours", "peer", "vs", "ratio", "meaning", "goal", "met")
    lines = [(r.section, r.metric, _fmt(r.ours), _fmt(r.peer), r.peer_name or "", _fmt(r.ratio), r.ratio_means,
              r.goal or "", "" if r.met is None else ("yes" if r.met else "NO")) for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join(out)


def document(results: dict[str, Any], settings: dict[str, Any], rows: list[Row]) -> dict[str, Any]:
    """The JSON written beside the printed table: settings, model, raw results per side and the rows."""
    import torch

    model = results.get("_model", {}).get("model", {})
    return {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": _cpus(),
                     "machine": platform.machine()},
            "settings": settings, "model": model,
            "results": {k: v for k, v in results.items() if not k.startswith("_")},
            "table": [asdict(r) for r in rows]}


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def write(doc: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path
