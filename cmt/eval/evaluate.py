"""Evaluate a model on a list of problems: batched greedy generation, answer extraction, metrics.

Every run reports accuracy (flexible extraction), strict accuracy, the extraction-failure rate, the mean
number of output tokens (the paper's token-efficiency claim) and the calibration of the answer confidence
(geometric mean of the probabilities of the answer's tokens): ECE, Brier score, overconfident errors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from cmt.data.answers import DEFAULT_ABS_TOL, DEFAULT_REL_TOL, extract_flexible, extract_strict, is_correct
from cmt.data.problem import Problem
from cmt.eval.calibration import brier_score, expected_calibration_error, overconfident_error_rate
from cmt.generation import decode_with_offsets, left_pad, sample, tokens_in_span


@dataclass
class Completion:
    """One generated answer with what scoring needs."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finished: bool


@dataclass
class Scored:
    """One problem's outcome, as saved in the per-run predictions file."""

    id: str
    gold: str
    output: str
    predicted: str | None
    predicted_strict: str | None
    correct: bool
    correct_strict: bool
    confidence: float
    output_tokens: int
    truncated: bool


def generate_completions(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
                         desc: str = "generate") -> list[Completion]:
    """Greedy completions for ``prompts``, batched longest-first (less padding), returned in input order."""
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[Completion | None] = [None] * len(prompts)
    eos_ids = sorted({tokenizer.eos_token_id, *([tokenizer.pad_token_id] if tokenizer.pad_token_id is not None else [])})
    was_training = model.training
    model.eval()
    with tqdm(total=len(prompts), desc=desc, unit="problem", leave=False) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            inputs = left_pad(tokenizer, [prompts[i] for i in rows], device)
            out = sample(model, **inputs, max_new_tokens=max_new_tokens, eos_ids=eos_ids,
                         pad_id=tokenizer.pad_token_id)
            for j, i in enumerate(rows):
                n = int(out.lengths[j])
                ids = out.tokens[j, :n].tolist()
                results[i] = Completion(text=tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids,
                                        logprobs=out.logprobs[j, :n].tolist(), finished=bool(out.finished[j]))
            bar.update(len(rows))
    model.train(was_training)
    return [r for r in results if r is not None]


def answer_confidence(tokenizer, completion: Completion, answer: str | None) -> float:
    """Geometric-mean probability of the tokens of the last occurrence of ``answer`` (0 when absent)."""
    if answer is None or not completion.token_ids:
        return 0.0
    text, offsets = decode_with_offsets(tokenizer, completion.token_ids)
    digits = answer.lstrip("-")
    matches = [m for m in re.finditer(re.escape(digits), text.replace(",", "_"))]
    if not matches:
        return 0.0
    span = tokens_in_span(offsets, matches[-1].start(), matches[-1].end())
    if not span:
        return 0.0
    return math.exp(sum(completion.logprobs[i] for i in span) / len(span))


def score(problems: Sequence[Problem], completions: Sequence[Completion], tokenizer,
          rel_tol: float | None = None, answer_type: str = "number") -> list[Scored]:
    """Extract and check each completion's answer.

    Each problem is checked under its own ``meta["answer_type"]``, ``meta["choices"]`` and
    ``meta["rel_tol"]``/``meta["abs_tol"]`` (set by its loader or by :mod:`cmt.data.suite` from the
    benchmark config), else under ``answer_type`` and ``rel_tol`` (None: the defaults of cmt.data.answers).
    """
    scored = []
    for problem, completion in zip(problems, completions, strict=True):
        kind, choices = problem.meta.get("answer_type", answer_type), problem.meta.get("choices")
        tolerance = {"rel_tol": problem.meta.get("rel_tol", DEFAULT_REL_TOL if rel_tol is None else rel_tol),
                     "abs_tol": problem.meta.get("abs_tol", DEFAULT_ABS_TOL)}
        flexible = extract_flexible(completion.text, kind, choices)
        strict = extract_strict(completion.text, kind, choices)
        scored.append(Scored(
            id=problem.id, gold=problem.gold, output=completion.text, predicted=flexible,
            predicted_strict=strict, correct=is_correct(flexible, problem.gold, kind, choices=choices, **tolerance),
            correct_strict=is_correct(strict, problem.gold, kind, choices=choices, **tolerance),
            confidence=answer_confidence(tokenizer, completion, flexible),
            output_tokens=len(completion.token_ids), truncated=not completion.finished,
        ))
    return scored


def metrics(scored: Sequence[Scored], ece_bins: int = 10, overconfidence: float = 0.9) -> dict[str, float]:
    """Aggregate metrics of one evaluation (fractions in [0, 1], token counts as means)."""
    n = len(scored)
    if n == 0:
        raise ValueError("cannot compute metrics of an empty evaluation")
    confidences = [s.confidence for s in scored]
    correct = [s.correct for s in scored]
    return {
        "n": float(n),
        "accuracy": sum(correct) / n,
        "accuracy_strict": sum(s.correct_strict for s in scored) / n,
        "extraction_fail_rate": sum(s.predicted is None for s in scored) / n,
        "ece": expected_calibration_error(confidences, correct, ece_bins),
        "brier": brier_score(confidences, correct),
        "overconfident_error_rate": overconfident_error_rate(confidences, correct, overconfidence),
        "mean_output_tokens": sum(s.output_tokens for s in scored) / n,
        "truncation_rate": sum(s.truncated for s in scored) / n,
    }


def as_dicts(scored: Sequence[Scored]) -> list[dict]:
    """Scored records as plain dicts (for JSON lines)."""
    return [asdict(s) for s in scored]


def evaluate(model, tokenizer, problems: Sequence[Problem], prompts: Sequence[str], max_new_tokens: int,
             batch_size: int, ece_bins: int = 10, desc: str = "eval") -> tuple[dict[str, float], list[Scored]]:
    """Generate, score and aggregate in one call; returns (metrics, per-problem records)."""
    with torch.inference_mode():
        completions = generate_completions(model, tokenizer, prompts, max_new_tokens, batch_size, desc)
    scored = score(problems, completions, tokenizer)
    return metrics(scored, ece_bins), scored
