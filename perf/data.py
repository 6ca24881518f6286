"""The data every comparison shares: synthetic problems with rule-teacher traces, and the local GSM8K copy."""

from __future__ import annotations

from pathlib import Path

from cmt.data.problem import Problem
from cmt.data.prompts import render_prompt

TEMPLATE = "Question: {question}\nAnswer:"  # conf/config.yaml's prompt.template; lm-eval's gsm8k doc_to_text
TARGET_PREFIX = " "


def render(question: str, tokenizer) -> str:
    """The prompt every method sees (the project's shared template, chat template when the tokenizer has one)."""
    return render_prompt(question, TEMPLATE, tokenizer, True)


def synthetic_problems(n: int, seed: int) -> list[Problem]:
    """``n`` training problems of the synthetic benchmark."""
    from cmt.data.synthetic import generate

    return generate("train", n, seed)


def traces(problems: list[Problem], kind: str) -> list[str]:
    """The rule teacher's ``comt`` (meta-thought) or ``cot`` (worked solution) target of each problem."""
    from cmt.teachers.rule import RuleTeacher

    return [t or "" for t in RuleTeacher().write(problems, kind)]


def sft_pairs(tokenizer, n: int, kind: str, seed: int) -> tuple[list[str], list[str]]:
    """(prompts, targets) of ``n`` synthetic problems with ``kind`` traces."""
    problems = synthetic_problems(n, seed)
    return [render(p.question, tokenizer) for p in problems], traces(problems, kind)


def gsm8k_problems(path: str | Path, n: int) -> list[Problem]:
    """The first ``n`` problems of a local GSM8K jsonl file (lm-eval's ``limit`` takes the first ``n`` too).

    Raises:
        FileNotFoundError: The file is missing, with the setting that points at it.
    """
    from cmt.data.benchmarks import gsm8k

    if not Path(path).is_file():
        raise FileNotFoundError(f"no GSM8K test file at {path}; set eval.data (perf/config.yaml or "
                                "--set eval.data=PATH) to a copy laid out like ../shared/data/benchmarks/gsm8k")
    return gsm8k.load("test", None, path=str(path))[:n]
