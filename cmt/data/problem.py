"""The one record every benchmark loader yields and every stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A math word problem with its gold answer.

    Attributes:
        id: Stable identifier, unique within its benchmark split (used for caching and result joins).
        question: The text shown to the model (for table problems, the table is already rendered in).
        gold: The gold final answer as a string, in the benchmark's own notation ("20", "3/4", "B").
        meta: Everything else a stage may use: ``intermediate`` (gold intermediate values, when known),
            ``program`` (synthetic problems), ``choices``, the source record's fields, ...
    """

    id: str
    question: str
    gold: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def intermediate(self) -> list[float]:
        """Gold intermediate values of the worked solution, in order (empty when unknown)."""
        return list(self.meta.get("intermediate", []))
