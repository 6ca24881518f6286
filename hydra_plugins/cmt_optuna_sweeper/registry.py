"""Optuna samplers and pruners by short name (``hydra.sweeper.sampler=gp``, ``hydra.sweeper.pruner=median``).

Used by the sweeper and, for pruners, by jobs (``cmt.sweeps.pruning``), which must judge their trial
with the same pruner as the sweeper. Optuna is imported inside the functions: Hydra's plugin scan
imports this module on every run, sweep or not.
"""

import importlib.util
from collections.abc import Mapping
from typing import Any

from hydra.errors import CompactHydraException

SAMPLERS = ("tpe", "gp", "random", "grid", "nsga2")
PRUNERS = ("median", "hyperband", "none")


class SweepConfigError(CompactHydraException, ValueError):
    """A sweeper setting that cannot work. Its message is one line naming the setting and the fix, and
    Hydra prints it without a traceback (a CompactHydraException)."""


def check_sampler(name: str) -> None:
    """Raise SweepConfigError unless `name` is a sampler this sweeper knows and can run here."""
    if name not in SAMPLERS:
        raise SweepConfigError(
            f"unknown sampler '{name}' (hydra.sweeper.sampler): choose one of {', '.join(SAMPLERS)}"
        )
    if name == "gp" and importlib.util.find_spec("scipy") is None:
        raise SweepConfigError("sampler 'gp' (Optuna's GPSampler) needs scipy and torch: pip install scipy")


def check_pruner(name: str) -> None:
    """Raise SweepConfigError unless `name` is a pruner this sweeper knows."""
    if name not in PRUNERS:
        raise SweepConfigError(
            f"unknown pruner '{name}' (hydra.sweeper.pruner): choose one of {', '.join(PRUNERS)}"
        )


def make_sampler(
    name: str,
    seed: int | None,
    options: Mapping[str, Any],
    grid: dict[str, list[Any]] | None = None,
) -> Any:
    """Build the Optuna sampler `name` with `seed` and extra keyword `options`.

    Args:
        grid: the values each parameter takes, required by (and only used for) the grid sampler.
    """
    import optuna

    check_sampler(name)
    if name == "grid":
        from hydra_plugins.cmt_optuna_sweeper._grid import AskTellGridSampler

        assert grid is not None, "the grid sampler needs the grid of the search space"
        return AskTellGridSampler(grid, seed=seed, **options)
    classes = {
        "tpe": optuna.samplers.TPESampler,
        "gp": optuna.samplers.GPSampler,
        "random": optuna.samplers.RandomSampler,
        "nsga2": optuna.samplers.NSGAIISampler,
    }
    return classes[name](seed=seed, **options)


def make_pruner(name: str, options: Mapping[str, Any]) -> Any:
    """Build the Optuna pruner `name` with extra keyword `options`."""
    import optuna

    check_pruner(name)
    classes = {
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "none": optuna.pruners.NopPruner,
    }
    return classes[name](**options)
