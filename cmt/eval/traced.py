"""Evaluate a model the way it was trained to generate: directly, or plan then execute (:mod:`cmt.trace`).

``stage=eval`` and RL's periodic validation call :func:`evaluate_traced` (the built-in loop) or
:func:`evaluate_generated` (any backend's generate, e.g. vLLM's) with the protocol saved beside the
checkpoint (:meth:`cmt.trace.TraceProtocol.load`); a model without one generates directly, exactly as
:func:`cmt.eval.evaluate.evaluate` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cmt.data.problem import Problem
from cmt.eval.evaluate import Completion, Scored, evaluate, evaluate_completions, generate_completions
from cmt.trace import Generate, TraceProtocol, as_completion, generate_traced


def hf_generate(model, tokenizer, max_new_tokens: int, batch_size: int, temperature: float = 0.0,
                generator: torch.Generator | None = None, desc: str = "generate") -> Generate:
    """A :data:`cmt.trace.Generate` over the built-in batched loop (greedy at temperature 0)."""
    def generate(prompts: Sequence[str], num_samples: int) -> list[Completion]:
        return generate_completions(model, tokenizer, prompts, max_new_tokens, batch_size, desc,
                                    samples=num_samples, temperature=temperature, generator=generator)
    return generate


def evaluate_traced(model, tokenizer, problems: Sequence[Problem], prompts: Sequence[str], protocol: TraceProtocol,
                    max_new_tokens: int, batch_size: int, ece_bins: int = 10, desc: str = "eval", samples: int = 1,
                    temperature: float = 0.0, seed: int = 0) -> tuple[dict[str, float], list[Scored]]:
    """:func:`cmt.eval.evaluate.evaluate` under a trace protocol; returns (metrics, per-sample records).

    Under ``plan_execute`` each phase may write up to ``max_new_tokens``; the scored output is plan + cue +
    execution (:func:`cmt.trace.as_completion`). Sampled evaluation (``samples`` > 1) samples both phases
    at ``temperature`` from a generator seeded with ``seed``.
    """
    if protocol.name == "direct":
        return evaluate(model, tokenizer, problems, prompts, max_new_tokens, batch_size, ece_bins, desc, samples,
                        temperature, seed)
    generator = None
    if samples > 1:
        generator = torch.Generator(next(model.parameters()).device).manual_seed(int(seed))
    generate = hf_generate(model, tokenizer, max_new_tokens, batch_size, temperature if samples > 1 else 0.0,
                           generator, desc)
    with torch.inference_mode():
        return evaluate_generated(generate, tokenizer, problems, prompts, protocol, ece_bins, samples)


def evaluate_generated(generate: Generate, tokenizer, problems: Sequence[Problem], prompts: Sequence[str],
                       protocol: TraceProtocol, ece_bins: int = 10,
                       samples: int = 1) -> tuple[dict[str, float], list[Scored]]:
    """Generate ``samples`` traces per prompt with any backend's ``generate`` under ``protocol`` and score
    them (plan + cue + execution under ``plan_execute``); returns (metrics, per-sample records)."""
    traced = generate_traced(generate, tokenizer, prompts, protocol, samples)
    completions = [as_completion(tokenizer, t, protocol) for t in traced]
    return evaluate_completions(tokenizer, problems, completions, ece_bins, samples)
