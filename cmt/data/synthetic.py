"""The synthetic benchmark: multi-step arithmetic word problems generated from solution programs.

Every problem is built from a *program*: a list of events ("she buys 5 bags with 3 apples in each"), each
event adding one or two arithmetic steps over named quantities. Because the program is known, the
generator also knows the gold answer and every intermediate value, and the rule teacher
(`cmt.teachers.rule`) can write both the number-free meta-thought and the worked CoT from it.

Splits, in the spirit of the paper's in- and out-of-distribution benchmarks:

- ``train`` / ``id``: the training distribution (1-2 events, small numbers, the training names and items);
  the two never share a question.
- ``ood_templates``: at least one event kind never seen in training (selling, doubling, sharing out).
- ``ood_steps``: three or four events and at least five arithmetic steps, more than any training program.
- ``ood_numbers``: the training templates with numbers ten to fifty times larger (like GSM-Hard).
- ``ood_renamed``: the training templates with held-out names and items (like GSM-Symbolic).

Run ``python -m cmt.data.synthetic`` to print a few problems of each split.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cmt.data.problem import Problem

SPLITS = ("train", "id", "ood_templates", "ood_steps", "ood_numbers", "ood_renamed")

# Names and items are split in two pools: training problems use the first, ``ood_renamed`` the second.
# Both pools appear in the tiny model's pretraining corpus, so renamed problems use known words.
NAMES = {
    "train": [("Mia", "She"), ("Leo", "He"), ("Ava", "She"), ("Noah", "He"), ("Emma", "She"),
              ("Liam", "He"), ("Zoe", "She"), ("Omar", "He"), ("Lily", "She"), ("Sam", "He"),
              ("Nora", "She"), ("Ben", "He"), ("Ella", "She"), ("Max", "He"), ("Ruby", "She"),
              ("Jack", "He")],
    "held_out": [("Ines", "She"), ("Tariq", "He"), ("Yuki", "She"), ("Pablo", "He"), ("Freya", "She"),
                 ("Kofi", "He"), ("Maya", "She"), ("Ivan", "He")],
}
ITEMS = {
    "train": ["apples", "marbles", "stickers", "books", "cookies", "coins", "pencils", "shells",
              "cards", "stamps", "candies", "eggs"],
    "held_out": ["lemons", "buttons", "ribbons", "crayons", "peaches", "beads"],
}
CONTAINERS = [("bag", "bags"), ("box", "boxes"), ("pack", "packs"), ("jar", "jars"), ("basket", "baskets")]

# Number ranges (inclusive) per scale: start amount, single amounts found/given, groups, items per group.
SCALES = {
    "small": {"start": (5, 30), "amount": (2, 15), "groups": (2, 5), "per_group": (2, 6)},
    "large": {"start": (100, 999), "amount": (20, 200), "groups": (2, 9), "per_group": (10, 60)},
}


@dataclass(frozen=True)
class Step:
    """One arithmetic step of a solution program: ``name = left op right``.

    Attributes:
        name: The variable the step defines (``bought``); CoT lines and meta-thoughts refer to it.
        op: One of ``+ - * /``.
        left, right: The operand values.
        value: The result (always a whole number).
        thought: The step described with quantity names only, no numbers (the meta-thought).
    """

    name: str
    op: str
    left: int
    right: int
    value: int
    thought: str

    @property
    def cot(self) -> str:
        """The worked line, e.g. ``bought = 5 * 3 = 15.``"""
        return f"{self.name} = {self.left} {self.op} {self.right} = {self.value}."


@dataclass
class ProgramState:
    """A program being drawn: the current quantity, the steps so far, and the story's cast."""

    rng: random.Random
    person: str
    pronoun: str
    friend: str
    items: str
    scale: dict
    value: int
    steps: list[Step]

    def draw(self, kind: str) -> int:
        low, high = self.scale[kind]
        return self.rng.randint(low, high)

    def container(self) -> tuple[str, str]:
        return self.rng.choice(CONTAINERS)

    def step(self, name: str, op: str, left: int, right: int, thought: str) -> int:
        value = {"+": left + right, "-": left - right, "*": left * right, "/": left // right}[op]
        taken = {s.name for s in self.steps}
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}{n}", n + 1
        self.steps.append(Step(unique, op, left, right, value, thought))
        return value


# An event appends one story sentence and one or two steps; it returns None when it does not apply
# to the current state (for example, giving away more than the person has).
Event = Callable[[ProgramState], "str | None"]


def _find(s: ProgramState) -> str:
    found = s.draw("amount")
    s.value = s.step("total", "+", s.value, found,
                     f"Add the {s.items} {s.person} found to the {s.items} {s.person} had.")
    return f"{s.pronoun} finds {found} more {s.items}."


def _take_away(s: ProgramState, thought: str, sentence: str) -> str | None:
    """The events that take a drawn amount away (None when it is not less than what the person has)."""
    amount = s.draw("amount")
    if amount >= s.value:
        return None
    s.value = s.step("left", "-", s.value, amount, thought)
    return sentence.format(amount=amount)


def _give(s: ProgramState) -> str | None:
    return _take_away(s, f"Subtract the {s.items} given to {s.friend}.",
                      f"{s.pronoun} gives {{amount}} {s.items} to {s.friend}.")


def _lose(s: ProgramState) -> str | None:
    return _take_away(s, f"Subtract the {s.items} {s.person} lost.", f"{s.pronoun} loses {{amount}} {s.items}.")


def _grouped(s: ProgramState, name: str, label: str, result: str, op: str) -> tuple[int, int, str] | None:
    """The grouped events: ``name = groups * per_group`` (the items ``label``), then added to (or taken
    from) the quantity, which becomes ``result``.

    Returns (groups, per_group, container plural) for the story sentence, or None when taking away more
    than the person has.
    """
    groups, per_group = s.draw("groups"), s.draw("per_group")
    if op == "-" and groups * per_group >= s.value:
        return None
    one, many = s.container()
    moved = s.step(name, "*", groups, per_group,
                   f"Multiply the {many} by the {s.items} in each {one} to get the {s.items} {label}.")
    combine = (f"Add the {s.items} {label} to the {s.items} {s.person} had." if op == "+"
               else f"Subtract the {s.items} {label} from the {s.items} {s.person} had.")
    s.value = s.step(result, op, s.value, moved, combine)
    return groups, per_group, many


def _buy(s: ProgramState) -> str:
    groups, per_group, many = _grouped(s, "bought", "bought", "total", "+")
    return f"{s.pronoun} buys {groups} {many} with {per_group} {s.items} in each."


def _receive(s: ProgramState) -> str:
    groups, per_group, many = _grouped(s, "got", "received", "total", "+")
    return f"{s.friend} gives {s.person} {groups} {many} of {per_group} {s.items} each."


# Event kinds that never appear in training problems: the ``ood_templates`` split.
def _sell(s: ProgramState) -> str | None:
    drawn = _grouped(s, "sold", "sold", "left", "-")
    if drawn is None:
        return None
    groups, per_group, many = drawn
    return f"{s.pronoun} sells {groups} {many} with {per_group} {s.items} in each."


def _double(s: ProgramState) -> str:
    s.value = s.step("doubled", "*", s.value, 2, f"Multiply the {s.items} {s.person} has by two.")
    return f"Then the number of {s.items} {s.person} has doubles."


TRAIN_EVENTS: tuple[Event, ...] = (_find, _give, _lose, _buy, _receive)
UNSEEN_EVENTS: tuple[Event, ...] = (_sell, _double)


@dataclass(frozen=True)
class _SplitSpec:
    events: tuple[int, int]
    scale: str
    pool: str
    unseen: bool = False
    # Programs with fewer arithmetic steps are redrawn (training programs have at most four).
    min_steps: int = 1


SPLIT_SPECS = {
    "train": _SplitSpec(events=(1, 2), scale="small", pool="train"),
    "id": _SplitSpec(events=(1, 2), scale="small", pool="train"),
    "ood_templates": _SplitSpec(events=(1, 2), scale="small", pool="train", unseen=True),
    "ood_steps": _SplitSpec(events=(3, 4), scale="small", pool="train", min_steps=5),
    "ood_numbers": _SplitSpec(events=(1, 2), scale="large", pool="train"),
    "ood_renamed": _SplitSpec(events=(1, 2), scale="small", pool="held_out"),
}


def _is_test_question(question: str) -> bool:
    """Deterministic train/test partition of the training distribution by question text (1 in 5 is test)."""
    return int(hashlib.sha1(question.encode()).hexdigest(), 16) % 5 == 0


def _generate_one(rng: random.Random, spec: _SplitSpec) -> tuple[str, list[Step], str]:
    """Draw one program and its story; returns (question, steps, answer question kind)."""
    names = NAMES[spec.pool]
    (person, pronoun), (friend, _) = rng.sample(names, 2)
    items = rng.choice(ITEMS[spec.pool])
    scale = SCALES[spec.scale]
    state = ProgramState(rng, person, pronoun, friend, items, scale, value=rng.randint(*scale["start"]), steps=[])
    sentences = [f"{person} has {state.value} {items}."]
    n_events = rng.randint(*spec.events)
    # ``ood_templates`` problems contain at least one unseen event; the others never do.
    unseen_at = rng.randrange(n_events) if spec.unseen else -1
    while len(sentences) - 1 < n_events:
        pool = UNSEEN_EVENTS if len(sentences) - 1 == unseen_at else TRAIN_EVENTS
        sentence = rng.choice(pool)(state)
        if sentence is not None:
            sentences.append(sentence)
    sentences.append(f"How many {items} does {person} have now?")
    return " ".join(sentences), state.steps, items


def generate(split: str, n: int, seed: int = 0, stream: str = "") -> list[Problem]:
    """Generate ``n`` distinct problems of one split, deterministically from ``seed``.

    Args:
        split: One of ``SPLITS``.
        n: Number of problems.
        seed: Generator seed; the same (split, n, seed, stream) always gives the same list.
        stream: A named stream of the split, drawn with its own random sequence ("" is the split's own, the
            teacher's questions): RL draws fresh questions of the training distribution from ``rl``, its
            validation from ``validation``. Streams can repeat a question by chance; callers that need
            disjoint sets filter by question (`cmt.data.suite.rl_problems`).

    Returns:
        Problems whose ``meta`` holds ``split``, ``steps`` (the program as dicts), ``intermediate`` values
        and ``items``.

    Raises:
        ValueError: For an unknown split or a non-positive ``n``.
    """
    if split not in SPLIT_SPECS:
        raise ValueError(f"unknown synthetic split {split!r}; choose one of {', '.join(SPLITS)}")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    spec = SPLIT_SPECS[split]
    # Each split has its own stream, so adding problems to one split never changes another.
    rng = random.Random(f"{seed}:{split}:{stream}" if stream else f"{seed}:{split}")
    problems: list[Problem] = []
    seen: set[str] = set()
    for _ in range(n * 200):
        question, steps, items = _generate_one(rng, spec)
        if question in seen or len(steps) < spec.min_steps:
            continue
        # The in-distribution test set and the training set partition the same distribution.
        if split in ("train", "id") and _is_test_question(question) != (split == "id"):
            continue
        seen.add(question)
        problems.append(Problem(
            id=f"synthetic-{split}-{stream + '-' if stream else ''}{seed}-{len(problems)}",
            question=question,
            gold=str(steps[-1].value),
            meta={"split": split, "steps": [asdict(s) for s in steps],
                  "intermediate": [s.value for s in steps], "items": items},
        ))
        if len(problems) == n:
            return problems
    raise ValueError(f"could not draw {n} distinct {split!r} problems; ask for fewer")


def steps_of(problem: Problem) -> list[Step]:
    """The solution program of a synthetic problem (raises KeyError for other benchmarks)."""
    return [Step(**step) for step in problem.meta["steps"]]


def load(split: str, n: int, seed: int = 0, stream: str = "") -> list[Problem]:
    """Benchmark loader entry point (``benchmark=synthetic``): the same as :func:`generate`."""
    return generate(split, n, seed, stream)


if __name__ == "__main__":
    for name in SPLITS:
        for problem in generate(name, 2, seed=0):
            print(f"[{name}] {problem.question}\n  -> {problem.gold}  steps={problem.intermediate}")
