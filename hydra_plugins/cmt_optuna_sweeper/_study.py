"""The study in its storage: open or resume it, keep this sweeper's trials alive, count the budget.

A sweep that dies (SIGKILL, a lost node) leaves trials RUNNING. This sweeper records a heartbeat for
each trial it runs; the next sweep of the study marks a trial whose heartbeat went stale FAIL and
queues its parameters again (Optuna's RetryHeartbeatStaleTrialCallback), so no work is silently lost
and the interrupted trial does not use up the budget.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from hydra_plugins.cmt_optuna_sweeper._search_space import SearchSpace
from hydra_plugins.cmt_optuna_sweeper.registry import SweepConfigError
from hydra_plugins.cmt_optuna_sweeper.trial_env import rdb_storage

log = logging.getLogger(__name__)


def storage_url(url: str, cwd: str) -> str:
    """`url` with a relative SQLite path made absolute against `cwd` and its folder created.

    Absolute because jobs may run in another folder (``hydra.job.chdir``) or on another machine.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return url
    if parsed.database in (None, "", ":memory:"):
        raise SweepConfigError(f"storage {url}: jobs cannot reach an in-memory SQLite database; give a file")
    path = Path(cwd, parsed.database).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def redacted(url: str) -> str:
    """`url` without its password, for logs and result files."""
    return make_url(url).render_as_string(hide_password=True)


def _retry_callback(max_retry: int) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def open_study(
    *,
    url: str,
    study_name: str,
    directions: list[str],
    pruner: Any,
    load_if_exists: bool,
    heartbeat_interval: int | None,
    grace_period: int | None,
    max_retry: int,
) -> optuna.Study:
    """Create the study, or load it when it exists and `load_if_exists`; check its directions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = rdb_storage(
            url,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=_retry_callback(max_retry) if heartbeat_interval else None,
        )
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            directions=directions,
            pruner=pruner,
            load_if_exists=load_if_exists,
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise SweepConfigError(
            f"study '{study_name}' already exists in {redacted(url)}: set hydra.sweeper.load_if_exists=true "
            "to continue it, or choose another hydra.sweeper.study_name"
        ) from None
    existing = [d.name.lower() for d in study.directions]
    if existing != directions:
        raise SweepConfigError(
            f"study '{study_name}' in {redacted(url)} has directions {existing}, this sweep {directions}: "
            "choose another hydra.sweeper.study_name"
        )
    return study


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark trials of dead sweeps FAIL and queue their parameters again (no-op without heartbeats)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def requeue_interrupted(study: optuna.Study, trials: Iterable[optuna.Trial], max_retry: int) -> None:
    """Fail trials whose launch was interrupted (Ctrl-C, a launcher error) and queue them again."""
    numbers = set()
    for trial in trials:
        study.tell(trial, state=TrialState.FAIL)
        numbers.add(trial.number)
    retry = _retry_callback(max_retry)
    for frozen in study.get_trials(deepcopy=True):
        if frozen.number in numbers:
            retry(study, frozen)


def trials_counted(trials: Sequence[FrozenTrial]) -> int:
    """Trials that use the budget: all but queued ones and interrupted ones whose retry is queued or ran."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials if t.state != TrialState.WAITING and t.number not in retried)


class Heartbeat:
    """Records a heartbeat for each trial this sweeper runs, every `interval` seconds, from a thread."""

    def __init__(self, study: optuna.Study, interval: int | None) -> None:
        self._storage = study._storage  # the study's storage, as Optuna's own heartbeat thread uses it
        self._interval = interval
        self._trial_ids: set = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        if self._interval:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def add(self, trials: Iterable[optuna.Trial]) -> None:
        """Track `trials`, recording their first heartbeat now: a trial without one is never stale."""
        if not self._interval:
            return
        with self._lock:
            for trial in trials:
                self._storage.record_heartbeat(trial._trial_id)
                self._trial_ids.add(trial._trial_id)

    def remove(self, trials: Iterable[optuna.Trial]) -> None:
        with self._lock:
            self._trial_ids.difference_update(t._trial_id for t in trials)

    def _beat(self) -> None:
        assert self._interval is not None
        while not self._stop.wait(self._interval):
            with self._lock:
                try:
                    for trial_id in self._trial_ids:
                        self._storage.record_heartbeat(trial_id)
                except Exception as e:  # noqa: BLE001 - a busy database: try again next beat, do not stop beating
                    log.warning(f"could not record a heartbeat: {e}")


def summary(study: optuna.Study, url: str, space: SearchSpace) -> dict[str, Any]:
    """The study's state for ``optuna_results.yaml``: trial counts and the best trial(s) with overrides."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        best: list[FrozenTrial] = []
    elif len(study.directions) > 1:
        best = study.best_trials
    else:
        best = [study.best_trial]
    return {
        "study_name": study.study_name,
        "storage": redacted(url),
        "directions": [d.name.lower() for d in study.directions],
        "trials": dict(Counter(t.state.name for t in trials)),
        # Single objective: the best trial; several: the Pareto front.
        "best_trials": [
            {"number": t.number, "values": t.values, "params": t.params, "overrides": space.overrides(t.params)}
            for t in best
        ],
    }
