"""Evaluate a model on a list of problems: batched generation, answer extraction, metrics.

Every run reports accuracy (flexible extraction), strict accuracy, the extraction-failure rate, the mean
number of output tokens (the paper's token-efficiency claim) and the calibration of the answer confidence
(geometric mean of the probabilities of the answer's tokens): ECE, Brier score, overconfident errors; and
the calibration of the intermediate results it states, judged as CCRL judges them (``intermediate_steps``
per output, ``step_accuracy``, ``step_ece``, ``overconfident_step_error_rate``: :func:`step_calibration`).
Decoding is greedy by default; with ``samples`` > 1 each problem gets that many sampled completions, the
per-sample metrics above are means over all samples (``accuracy`` is then pass@1), and ``pass_at_k`` and
``majority_accuracy`` are added (:mod:`cmt.eval.sampling`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from cmt.data.answers import AnswerRules
from cmt.data.problem import Problem
from cmt.eval.calibration import (
    brier_score,
    expected_calibration_error,
    overconfident_error_rate,
    step_calibration,
)
from cmt.eval.sampling import majority_vote, pass_at_k
from cmt.generation import decode_with_offsets, left_pad, sample, tokens_in_span
from cmt.rewards.calibration import judge_steps
from cmt.rewards.types import Rollout


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
    # Which of the problem's samples this is (0 under greedy decoding).
    sample: int = 0
    # The judged intermediate steps of the output, in order: the confidence in each stated result and whether
    # it is right for the problem (cmt.rewards.calibration.judge_steps, as CCRL judges them).
    step_confidences: list[float] = field(default_factory=list)
    step_correct: list[bool] = field(default_factory=list)


def generate_completions(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
                         desc: str = "generate", samples: int = 1, temperature: float = 0.0,
                         generator: torch.Generator | None = None) -> list[Completion]:
    """Completions for ``prompts``, batched longest-first in tokens (less padding), returned in input order.

    Greedy with the defaults. With ``samples`` > 1, each prompt is sampled that many times at
    ``temperature`` (drawing from ``generator``, on the model's device, for reproducibility) and the
    result holds a prompt's ``samples`` completions one after the other; a batch then holds
    ``batch_size // samples`` prompts (at least one), each run through the model once for all its samples.
    """
    device = next(model.parameters()).device
    order = longest_first(tokenizer, prompts)
    per_batch = max(1, batch_size // samples)
    results: list[Completion | None] = [None] * (len(prompts) * samples)
    pad_ids = [tokenizer.pad_token_id] if tokenizer.pad_token_id is not None else []
    eos_ids = sorted({tokenizer.eos_token_id, *pad_ids})
    was_training = model.training
    model.eval()
    with tqdm(total=len(results), desc=desc, unit="problem", leave=False) as bar:
        for start in range(0, len(order), per_batch):
            chosen = order[start:start + per_batch]
            inputs = left_pad(tokenizer, [prompts[i] for i in chosen], device)
            out = sample(model, **inputs, max_new_tokens=max_new_tokens, eos_ids=eos_ids,
                         pad_id=tokenizer.pad_token_id, temperature=temperature, generator=generator,
                         num_samples=samples)
            # Row j of the output is sample j % samples of prompt chosen[j // samples].
            for j in range(out.tokens.shape[0]):
                n = int(out.lengths[j])
                ids = out.tokens[j, :n].tolist()
                results[chosen[j // samples] * samples + j % samples] = Completion(
                    text=tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids,
                    logprobs=out.logprobs[j, :n].tolist(), finished=bool(out.finished[j]))
            bar.update(out.tokens.shape[0])
    model.train(was_training)
    return [r for r in results if r is not None]


def longest_first(tokenizer, prompts: Sequence[str]) -> list[int]:
    """Indices of ``prompts`` by token count, longest first: consecutive batches then pad little.

    Token counts, not characters: on GSM8K's 1,319 prompts, batches of 16 pad 2% of the prompt tokens in
    this order and 14% when sorted by characters.
    """
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=True).input_ids]
    return sorted(range(len(prompts)), key=lambda i: -lengths[i])


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
          rel_tol: float | None = None, answer_type: str = "number", samples: int = 1) -> list[Scored]:
    """Extract and check each completion's answer; ``completions`` holds ``samples`` per problem, in a row.

    Each problem is checked under its own ``meta["answer_type"]``, ``meta["choices"]`` and
    ``meta["rel_tol"]``/``meta["abs_tol"]`` (set by its loader or by :mod:`cmt.data.suite` from the
    benchmark config), else under ``answer_type`` and ``rel_tol`` (None: the defaults of cmt.data.answers).
    """
    scored = []
    if len(completions) != samples * len(problems):
        raise ValueError(f"{len(completions)} completions for {len(problems)} problems x {samples} samples")
    for index, completion in enumerate(completions):
        problem = problems[index // samples]
        rules = AnswerRules.of(problem, answer_type, rel_tol)
        flexible, strict = rules.extract(completion.text, "flexible"), rules.extract(completion.text, "strict")
        scored.append(Scored(
            id=problem.id, gold=problem.gold, output=completion.text, predicted=flexible,
            predicted_strict=strict, correct=rules.correct(flexible, problem.gold),
            correct_strict=rules.correct(strict, problem.gold),
            confidence=answer_confidence(tokenizer, completion, flexible),
            output_tokens=len(completion.token_ids), truncated=not completion.finished, sample=index % samples,
            **judged_intermediate_steps(tokenizer, problem, completion),
        ))
    return scored


def judged_intermediate_steps(tokenizer, problem: Problem, completion: Completion) -> dict[str, list]:
    """``step_confidences`` and ``step_correct`` of a completion's judged intermediate steps: the steps CCRL
    scores, found and judged by the reward's own code (flexible extraction, ``problem`` correctness). A
    completion given as text alone (no tokens) has no confidences to judge: none."""
    if not completion.token_ids:
        return {"step_confidences": [], "step_correct": []}
    rollout = Rollout.from_tokens(tokenizer, 0, completion.token_ids, completion.logprobs, completion.finished)
    steps = [j for j in judge_steps(rollout, problem) if not j.step.is_final]
    return {"step_confidences": [j.confidence for j in steps], "step_correct": [j.correct for j in steps]}


def metrics(scored: Sequence[Scored], ece_bins: int = 10, overconfidence: float = 0.9,
            samples: int = 1) -> dict[str, float]:
    """Aggregate metrics of one evaluation (fractions in [0, 1], token counts as means).

    ``scored`` holds ``samples`` records per problem, in a row. ``n`` counts problems; every other value
    is a mean over all records. With ``samples`` > 1 the result also has ``samples``, ``pass_at_1`` (equal
    to ``accuracy``), ``pass_at_k`` (k = ``samples``) and ``majority_accuracy`` (the most frequent
    extracted answer of each problem, ties to the first; wrong when no sample has an answer).
    """
    n = len(scored)
    if n == 0:
        raise ValueError("cannot compute metrics of an empty evaluation")
    confidences = [s.confidence for s in scored]
    correct = [s.correct for s in scored]
    values = {
        "n": float(n // samples),
        "accuracy": sum(correct) / n,
        "accuracy_strict": sum(s.correct_strict for s in scored) / n,
        "extraction_fail_rate": sum(s.predicted is None for s in scored) / n,
        "ece": expected_calibration_error(confidences, correct, ece_bins),
        "brier": brier_score(confidences, correct),
        "overconfident_error_rate": overconfident_error_rate(confidences, correct, overconfidence),
        "mean_output_tokens": sum(s.output_tokens for s in scored) / n,
        "truncation_rate": sum(s.truncated for s in scored) / n,
        **step_calibration([c for s in scored for c in s.step_confidences],
                           [k for s in scored for k in s.step_correct], n, overconfidence),
    }
    if samples > 1:
        groups = [scored[i:i + samples] for i in range(0, n, samples)]
        votes = [majority_vote([s.predicted for s in group]) for group in groups]
        values.update({
            "samples": float(samples),
            "pass_at_1": values["accuracy"],
            "pass_at_k": sum(pass_at_k(samples, sum(s.correct for s in g), samples) for g in groups) / len(groups),
            "majority_accuracy": sum(v is not None and g[v].correct
                                     for g, v in zip(groups, votes, strict=True)) / len(groups),
        })
    return values


def as_dicts(scored: Sequence[Scored]) -> list[dict]:
    """Scored records as plain dicts (for JSON lines)."""
    return [asdict(s) for s in scored]


def evaluate_completions(tokenizer, problems: Sequence[Problem], completions: Sequence[Completion],
                         ece_bins: int = 10, samples: int = 1) -> tuple[dict[str, float], list[Scored]]:
    """Score and aggregate completions made by any backend; returns (metrics, per-sample records)."""
    scored = score(problems, completions, tokenizer, samples=samples)
    return metrics(scored, ece_bins, samples=samples), scored


def evaluate(model, tokenizer, problems: Sequence[Problem], prompts: Sequence[str], max_new_tokens: int,
             batch_size: int, ece_bins: int = 10, desc: str = "eval", samples: int = 1, temperature: float = 0.0,
             seed: int = 0) -> tuple[dict[str, float], list[Scored]]:
    """Generate, score and aggregate in one call; returns (metrics, per-sample records).

    Greedy when ``samples`` is 1; else ``samples`` completions per problem at ``temperature``, from a
    generator seeded with ``seed`` so that a rerun draws the same samples.
    """
    generator = None
    if samples > 1:
        generator = torch.Generator(next(model.parameters()).device).manual_seed(int(seed))
    with torch.inference_mode():
        completions = generate_completions(model, tokenizer, prompts, max_new_tokens, batch_size, desc,
                                           samples=samples, temperature=temperature if samples > 1 else 0.0,
                                           generator=generator)
    return evaluate_completions(tokenizer, problems, completions, ece_bins, samples)
