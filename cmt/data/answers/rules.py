"""How one problem's answer is read and checked: the single path eval's scoring and RL's outcome reward share.

A problem carries its own rules in ``meta`` (``answer_type``, ``choices``, ``rel_tol``/``abs_tol``, set by its
loader or by :mod:`cmt.data.suite` from the benchmark config); otherwise the defaults apply. Scoring an eval
and rewarding a rollout read them here, so a TabMWP text answer or an AQuA option counts the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmt.data.answers.comparison import is_correct
from cmt.data.answers.extraction import extract_flexible, extract_strict
from cmt.data.answers.numbers import DEFAULT_ABS_TOL, DEFAULT_REL_TOL
from cmt.data.problem import Problem

EXTRACTIONS = ("flexible", "strict")


@dataclass(frozen=True)
class AnswerRules:
    """The answer type, options and numeric tolerance of one problem."""

    answer_type: str = "number"
    choices: list[str] | None = None
    rel_tol: float = DEFAULT_REL_TOL
    abs_tol: float = DEFAULT_ABS_TOL

    @classmethod
    def of(cls, problem: Problem, answer_type: str = "number", rel_tol: float | None = None) -> AnswerRules:
        """The rules in ``problem.meta``, else ``answer_type`` and ``rel_tol`` (None: the default)."""
        meta = problem.meta
        return cls(meta.get("answer_type", answer_type), meta.get("choices"),
                   meta.get("rel_tol", DEFAULT_REL_TOL if rel_tol is None else rel_tol),
                   meta.get("abs_tol", DEFAULT_ABS_TOL))

    def extract(self, text: str, extraction: str = "flexible") -> str | None:
        """The final answer of ``text`` under ``extraction`` (``flexible`` or ``strict``).

        Raises:
            ValueError: For an unknown extraction.
        """
        if extraction == "flexible":
            return extract_flexible(text, self.answer_type, self.choices)
        if extraction == "strict":
            return extract_strict(text, self.answer_type, self.choices)
        raise ValueError(f"unknown answer extraction {extraction!r}; choose one of {', '.join(EXTRACTIONS)}")

    def correct(self, predicted: str | None, gold: str) -> bool:
        """Whether ``predicted`` matches ``gold`` (:func:`cmt.data.answers.is_correct`)."""
        return is_correct(predicted, gold, self.answer_type, choices=self.choices, rel_tol=self.rel_tol,
                          abs_tol=self.abs_tol)
