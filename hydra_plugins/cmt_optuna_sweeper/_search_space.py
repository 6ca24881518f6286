"""The search space: Hydra sweep overrides -> Optuna distributions, and trial params -> job overrides.

The syntax is Hydra's own override grammar, so the same string works in ``hydra.sweeper.params`` and on
the command line, and Hydra reports typos:

    interval(1e-5, 1e-3)              float, uniform in [low, high]
    tag(log, interval(1e-5, 1e-3))    float, log-uniform
    int(interval(1, 8))               int in [1, 8], both ends included
    tag(log, int(interval(1, 64)))    int, log-uniform
    range(1, 9)  range(0, 12, step=4) int (or float) grid from start, stop excluded as in Python
    choice(a, b, c)  or  a,b,c        categorical (strings, numbers, booleans, lists, dicts)

Anything else (``model=tiny``) is a fixed override given to every trial. The Optuna parameter name is
the override key without its ``+``/``++`` prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hydra_plugins.cmt_optuna_sweeper.registry import SweepConfigError

_PRIMITIVES = (str, int, float, bool)


@dataclass(frozen=True)
class Dimension:
    """One searched parameter."""

    # Optuna's parameter name: the override key without +/++ (e.g. sft.optimizer.lr).
    name: str
    # The key as the job override writes it (e.g. +optuna_only.x).
    key: str
    distribution: BaseDistribution
    # The values a grid search walks (None for intervals, which have no grid).
    grid: list[Any] | None
    # Categorical value -> its override text (a list choice is stored in Optuna as its text).
    texts: dict[Any, str] = field(default_factory=dict)

    def override(self, value: Any) -> str:
        """The job override that sets this parameter to `value`."""
        text = self.texts[value] if self.texts else Transformer.str(value)
        return f"{self.key}={text}"


@dataclass(frozen=True)
class SearchSpace:
    dimensions: list[Dimension]
    # Non-sweep overrides, given unchanged to every trial.
    fixed: list[str]

    def distributions(self) -> dict[str, BaseDistribution]:
        return {d.name: d.distribution for d in self.dimensions}

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's values, for the grid sampler; intervals have none."""
        for d in self.dimensions:
            if d.grid is None:
                raise SweepConfigError(
                    f"the grid sampler walks choice() and range() values; {d.key} is an interval"
                )
        return {d.name: list(d.grid) for d in self.dimensions if d.grid is not None}

    def grid_size(self) -> int:
        size = 1
        for values in self.grid().values():
            size *= len(values)
        return size

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The overrides of a job that runs the trial with these `params` (fixed ones first).

        A parameter this space does not search (a trial of an earlier run of the study that searched
        more) is written as a plain ``name=value``.
        """
        by_name = {d.name: d for d in self.dimensions}
        return self.fixed + [
            by_name[name].override(value) if name in by_name else f"{name}={Transformer.str(value)}"
            for name, value in params.items()
        ]


def parse_search_space(overrides: Iterable[str], parser: OverridesParser) -> SearchSpace:
    """Parse override strings (config `params` first, then the command line) into a search space.

    A later override of the same key replaces an earlier one, so the command line wins over `params`.
    """
    by_name: dict[str, Override] = {}
    for override in parser.parse_overrides(list(overrides)):
        name = _name(override)
        by_name.pop(name, None)  # keep the order of the last occurrence
        by_name[name] = override
    dimensions = [_dimension(name, o) for name, o in by_name.items() if o.is_sweep_override()]
    fixed = [str(o.input_line) for o in by_name.values() if not o.is_sweep_override()]
    return SearchSpace(dimensions=dimensions, fixed=fixed)


def _name(override: Override) -> str:
    if override.package is None:
        return override.key_or_group
    return f"{override.key_or_group}@{override.package}"


def _dimension(name: str, override: Override) -> Dimension:
    value = override.value()
    key = override.get_key_element()
    tags = set(getattr(value, "tags", set()))
    if tags - {"log"}:
        raise SweepConfigError(f"{key}: unknown tag(s) {sorted(tags - {'log'})}; the only tag is log")
    if isinstance(value, IntervalSweep):
        return _interval(name, key, value, log="log" in tags)
    if tags:
        raise SweepConfigError(f"{key}: log scale needs an interval, e.g. tag(log, int(interval(1, 64)))")
    if isinstance(value, RangeSweep):
        return _range(name, key, value, list(override.sweep_iterator()))
    assert isinstance(value, ChoiceSweep)
    return _choice(name, key, list(override.sweep_iterator(transformer=Transformer.identity)))


def _interval(name: str, key: str, value: IntervalSweep, log: bool) -> Dimension:
    low, high = value.start, value.end
    if isinstance(low, int) and isinstance(high, int):
        distribution: BaseDistribution = IntDistribution(low, high, log=log)
    else:
        distribution = FloatDistribution(float(low), float(high), log=log)
    return Dimension(name=name, key=key, distribution=distribution, grid=None)


def _range(name: str, key: str, value: RangeSweep, values: list[Any]) -> Dimension:
    if not values:
        raise SweepConfigError(f"{key}: the range is empty")
    low, high, step = min(values), max(values), abs(value.step)
    if all(isinstance(v, int) for v in values):
        distribution: BaseDistribution = IntDistribution(low, high, step=step)
    else:
        distribution = FloatDistribution(float(low), float(high), step=float(step))
    return Dimension(name=name, key=key, distribution=distribution, grid=values)


def _choice(name: str, key: str, items: list[Any]) -> Dimension:
    # Optuna stores str/int/float/bool; a list or dict choice is stored as its override text.
    texts = {}
    for item in items:
        stored = item if isinstance(item, _PRIMITIVES) else Transformer.str(item)
        texts[stored] = Transformer.str(item)
    choices = list(texts)
    return Dimension(name=name, key=key, distribution=CategoricalDistribution(choices), grid=choices, texts=texts)
