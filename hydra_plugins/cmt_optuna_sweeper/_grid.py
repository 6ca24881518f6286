"""Optuna's GridSampler, usable under ask-and-tell."""

from __future__ import annotations

from collections.abc import Sequence

import optuna


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its end-of-grid ``study.stop()``.

    ``study.stop()`` only works inside ``study.optimize``; under ask-and-tell it raises after the last
    grid point is told. The sweeper stops by itself: it never asks for more trials than the grid has points.
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        del study, trial, state, values

