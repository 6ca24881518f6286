"""The rule teacher: writes meta-thoughts and worked solutions from a synthetic problem's program.

It stands in for the paper's LLM teacher on the embedded default. Both kinds of trace end with the same
answer sentence, so the two methods differ only in the reasoning the student is trained to write:

- ``comt``: each step described with quantity names only, never a number (the meta-thought).
- ``cot``: each step executed, ``bought = 5 * 3 = 15.`` (the complete worked solution).
"""

from __future__ import annotations

from collections.abc import Sequence

from cmt.data.problem import Problem
from cmt.data.prompts import answer_sentence
from cmt.data.synthetic import steps_of
from cmt.teachers import KINDS


class RuleTeacher:
    """Deterministic teacher for ``benchmark=synthetic`` problems (they carry their program)."""

    def __init__(self, name: str = "rule"):
        self.name = name

    def write(self, problems: Sequence[Problem], kind: str) -> list[str | None]:
        """One trace per problem, in order.

        Args:
            problems: Synthetic problems (their ``meta["steps"]`` holds the program).
            kind: ``comt`` or ``cot``.

        Raises:
            ValueError: For an unknown kind, or a problem without a program (not synthetic).
        """
        if kind not in KINDS:
            raise ValueError(f"unknown trace kind {kind!r}; choose one of {', '.join(KINDS)}")
        traces: list[str | None] = []
        for problem in problems:
            if "steps" not in problem.meta:
                raise ValueError(
                    f"teacher=rule needs synthetic problems with a program; {problem.id!r} has none "
                    "(use benchmark=synthetic, or an LLM teacher such as teacher=openai)")
            steps = steps_of(problem)
            body = " ".join(step.thought if kind == "comt" else step.cot for step in steps)
            traces.append(f"{body} {answer_sentence(problem.gold)}")
        return traces
