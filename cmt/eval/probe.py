"""Probe what a model knows of the synthetic world before fine-tuning: can it state a story's final quantity?

Each ``id`` problem's story (the events, without its question) is followed by a cue from the pretraining
corpus, "Now Mia has", and the first number of the greedy continuation is compared with the gold answer.
Variants put text between the events and the cue, the question or the rule teacher's meta-thought, which is
where a CoMT-trained model must state its answer: the gap between the variants bounds what CoMT-SFT can get
out of the model's own arithmetic. Accuracy is given overall and by the number of steps of the program.

    python -m cmt.eval.probe                                  # the bundled tiny model
    python -m cmt.eval.probe --model /a/save_pretrained/folder --n 400 --seed 11
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from cmt.data.answers import parse_number
from cmt.data.problem import Problem
from cmt.data.synthetic import generate, steps_of
from cmt.teachers.rule import RuleTeacher

# What stands between a story's events and the cue, by variant name.
VARIANTS: dict[str, Callable[[Problem, str], str]] = {
    "events": lambda problem, meta_thought: "",
    "events + question": lambda problem, meta_thought: question_sentence(problem),
    "events + meta-thought": lambda problem, meta_thought: meta_thought,
}


def question_sentence(problem: Problem) -> str:
    """The last sentence of a synthetic question ("How many apples does Mia have now?")."""
    return problem.question[problem.question.rindex(". ") + 2:]


def probe_texts(problems: Sequence[Problem], variant: str) -> list[str]:
    """The probe inputs of one variant: events, the variant's gap, then "Now NAME has"."""
    meta_thoughts = RuleTeacher().write(problems, "comt")
    texts = []
    for problem, trace in zip(problems, meta_thoughts, strict=True):
        events = problem.question[:problem.question.rindex(". ") + 1]
        gap = VARIANTS[variant](problem, trace[:trace.rindex("The answer is")].strip())
        person = problem.question.split()[0]
        texts.append(" ".join(part for part in (events, gap, f"Now {person} has") if part))
    return texts


def accuracy_by_steps(problems: Sequence[Problem], continuations: Sequence[str]) -> dict[int | str, float]:
    """Fraction right overall (key ``all``) and per program length (number of steps)."""
    right: dict[int | str, list[bool]] = defaultdict(list)
    for problem, text in zip(problems, continuations, strict=True):
        number = parse_number(text)
        correct = number is not None and number.canonical() == problem.gold
        right["all"].append(correct)
        right[len(steps_of(problem))].append(correct)
    return {key: sum(values) / len(values) for key, values in right.items()}


def main(argv: Sequence[str] | None = None) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from cmt.eval.evaluate import generate_completions
    from cmt.models import bundled_path, load_tokenizer

    parser = argparse.ArgumentParser(prog="python -m cmt.eval.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(bundled_path("tiny")), help="a save_pretrained folder")
    parser.add_argument("--n", type=int, default=400, help="id problems to probe")
    parser.add_argument("--seed", type=int, default=11, help="seed of the problems")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n {args.n}: give at least one problem")
    if not Path(args.model).is_dir():
        parser.error(f"--model {args.model}: not a folder; give a save_pretrained folder")
    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    problems = generate("id", args.n, seed=args.seed)
    lengths = sorted({len(steps_of(problem)) for problem in problems})
    print(f"{'variant':<24}{'all':>7}" + "".join(f"{f'{n} steps':>10}" for n in lengths))
    for variant in VARIANTS:
        completions = generate_completions(model, tokenizer, probe_texts(problems, variant), max_new_tokens=6,
                                           batch_size=64, desc=variant)
        accuracy = accuracy_by_steps(problems, [c.text for c in completions])
        print(f"{variant:<24}{100 * accuracy['all']:>6.1f}%"
              + "".join(f"{100 * accuracy[n]:>9.1f}%" for n in lengths))


if __name__ == "__main__":
    main()
