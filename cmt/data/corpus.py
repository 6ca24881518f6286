"""The pretraining corpus of the bundled tiny model: arithmetic and the language of the problems.

It teaches what a pretrained LLM brings to post-training (arithmetic, and stories about people and
quantities that change) and deliberately *not* the solution format: there is no "Question:"/"Answer:"
layout, no worked solution, no meta-thought and no "The answer is" sentence in it. Those come only from
fine-tuning, which is what makes the tiny model a fair stand-in for the paper's students.

Documents, mixed at random:

- drills: ``12 + 15 = 27.`` lines over the number ranges of every split;
- arithmetic in words: "Multiply 5 by 3 to get 15.", so the operation verbs mean something;
- stories: the synthetic generator's events over *all* names, items and event kinds, with the new
  quantity stated after each event ("Now Mia has 27 apples.") or only at the end, so quantities and their
  updates are language the model knows before it ever sees a problem.
"""

from __future__ import annotations

import random

from cmt.data import synthetic


def _drill(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(4, 8)):
        op = rng.choice("+-*")
        a, b, c = _operands(rng, op)
        lines.append(f"{a} {op} {b} = {c}.")
    return " ".join(lines)


def _operands(rng: random.Random, op: str) -> tuple[int, int, int]:
    """Operands and result of one drill operation.

    Four in five draws come from the range the training problems live in (a running total up to 100 and
    an amount up to 30, single-digit tables, doubling), so that the facts a small model needs are seen
    often enough to be learnt; the rest cover the large numbers of the ``ood_numbers`` split.
    """
    small = rng.random() < 0.8
    if op == "*":
        if small:
            a, b = (rng.randint(2, 100), 2) if rng.random() < 0.2 else (rng.randint(2, 9), rng.randint(2, 9))
        else:
            a, b = rng.randint(10, 60), rng.randint(2, 9)
        a, b = (b, a) if rng.random() < 0.5 else (a, b)
    else:
        a, b = (rng.randint(2, 100), rng.randint(2, 30)) if small else (rng.randint(100, 1200), rng.randint(2, 400))
        if op == "-" and b > a:
            a, b = b, a
        elif op == "+" and rng.random() < 0.5:
            a, b = b, a
    return a, b, {"+": a + b, "-": a - b, "*": a * b}[op]


_IN_WORDS = {
    "+": ["Add {a} and {b} to get {c}.", "{a} plus {b} is {c}.", "The total of {a} and {b} is {c}."],
    "-": ["Subtract {b} from {a} to get {c}.", "{a} minus {b} is {c}.", "Take {b} away from {a} and {c} are left."],
    "*": ["Multiply {a} by {b} to get {c}.", "{a} times {b} is {c}.", "{a} groups of {b} make {c}."],
}


def _words(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(3, 6)):
        op = rng.choice("+-*")
        a, b, c = _operands(rng, op)
        sentences.append(rng.choice(_IN_WORDS[op]).format(a=a, b=b, c=c))
    return " ".join(sentences)


def _story(rng: random.Random) -> str:
    """A story over any names, items and event kinds.

    Half the stories state the new quantity after every event ("Now Mia has 27 apples.", with the
    product of a grouped event first: "That is 12 apples."); the other half state only the final quantity,
    so the model also learns to carry a quantity through several events without writing it down.
    """
    pool = rng.choice(["train", "held_out"])
    names = synthetic.NAMES[pool]
    (person, pronoun), (friend, _) = rng.sample(names, 2)
    items = rng.choice(synthetic.ITEMS[pool])
    scale = synthetic.SCALES["small" if rng.random() < 0.85 else "large"]
    state = synthetic.ProgramState(rng, person, pronoun, friend, items, scale,
                                   value=rng.randint(*scale["start"]), steps=[])
    stepwise = rng.random() < 0.5
    sentences = [f"{person} has {state.value} {items}."]
    for _ in range(rng.randint(1, 4 if stepwise else 3)):
        event = rng.choice(synthetic.TRAIN_EVENTS + synthetic.UNSEEN_EVENTS)
        n_steps = len(state.steps)
        sentence = event(state)
        if sentence is None:
            continue
        sentences.append(sentence)
        if stepwise:
            if len(state.steps) - n_steps == 2:
                sentences.append(f"That is {state.steps[-2].value} {items}.")
            sentences.append(f"Now {person} has {state.value} {items}{rng.choice(['', '', ' in total', ' left'])}.")
    if not stepwise:
        sentences.append(f"{rng.choice(['Now', 'In the end,', 'After that,'])} {person} has {state.value} {items}.")
    return " ".join(sentences)


def documents(n: int, seed: int = 0, drill_fraction: float = 0.3, words_fraction: float = 0.15) -> list[str]:
    """``n`` corpus documents, deterministic in ``seed``: drills, arithmetic in words, and stories."""
    rng = random.Random(f"corpus:{seed}")
    docs = []
    for _ in range(n):
        draw = rng.random()
        kind = _drill if draw < drill_fraction else _words if draw < drill_fraction + words_fraction else _story
        docs.append(kind(rng))
    return docs
