"""The sweep loop: ask a batch of trials, launch one job per trial, tell each trial how its job ended.

Until the study holds ``n_trials`` trials (its own, earlier runs', other workers'):
  1. fail trials of dead sweeps (stale heartbeat) and queue their parameters again;
  2. ask up to ``n_jobs`` trials through the storage, so workers sharing the study never collide;
  3. launch their jobs with the trial's parameters as overrides and its address in the environment;
  4. tell: COMPLETE with the objective values, PRUNED when the job raised ``optuna.TrialPruned``,
     FAIL when it raised anything else (the sweep goes on).
If the sweep itself stops between asking and telling (Ctrl-C, a bad override, a launcher error), the
batch is failed and queued again. A return value that does not fit ``objectives``/``directions`` is a
config error: the trial is told FAIL and the sweep stops with that error after the batch. At the end
the study's summary goes to ``<sweep dir>/optuna_results.yaml``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.cmt_optuna_sweeper._objectives import ObjectiveError, objective_values
from hydra_plugins.cmt_optuna_sweeper._search_space import SearchSpace, parse_search_space
from hydra_plugins.cmt_optuna_sweeper._study import (
    Heartbeat,
    fail_stale_trials,
    open_study,
    redacted,
    requeue_interrupted,
    storage_url,
    summary,
    trials_counted,
)
from hydra_plugins.cmt_optuna_sweeper.config import CmtOptunaSweeperConf
from hydra_plugins.cmt_optuna_sweeper.registry import (
    SweepConfigError,
    check_pruner,
    check_sampler,
    make_pruner,
    make_sampler,
)
from hydra_plugins.cmt_optuna_sweeper.trial_env import TrialAddress

log = logging.getLogger(__name__)

RESULTS_FILE = "optuna_results.yaml"
DIRECTIONS = ("minimize", "maximize")


def run_sweep(sweeper: Sweeper, settings: CmtOptunaSweeperConf, arguments: list[str]) -> list[Sequence[JobReturn]]:
    """Run the sweep described by `settings` and the command-line `arguments`; returns the job batches."""
    assert sweeper.config is not None and sweeper.launcher is not None and sweeper.hydra_context is not None
    s = settings
    directions, objectives = _check(s)
    parser = OverridesParser.create(config_loader=sweeper.hydra_context.config_loader)
    space = parse_search_space([f"{k}={v}" for k, v in s.params.items()] + list(arguments), parser)
    if not space.dimensions:
        raise SweepConfigError("nothing to search: set hydra.sweeper.params or pass a sweep such as 'x=interval(0, 1)'")
    grid = space.grid() if s.sampler == "grid" else None
    n_trials = min(s.n_trials, space.grid_size()) if grid is not None else s.n_trials

    url = storage_url(s.storage, cwd=sweeper.config.hydra.runtime.cwd)
    study = open_study(
        url=url,
        study_name=s.study_name,
        directions=directions,
        pruner=make_pruner(s.pruner, s.pruner_options or {}),
        load_if_exists=s.load_if_exists,
        heartbeat_interval=s.heartbeat_interval,
        grace_period=s.grace_period,
        max_retry=s.max_retry,
    )
    # A run joining a study with k trials seeds its sampler with seed + k, not to replay earlier draws.
    known = len(study.trials)
    study.sampler = make_sampler(s.sampler, None if s.seed is None else s.seed + known, s.sampler_options or {}, grid)
    log.info(
        f"Optuna study '{s.study_name}' in {redacted(url)}: {known} trial(s) so far, {n_trials} wanted; "
        f"sampler {type(study.sampler).__name__}, pruner {type(study.pruner).__name__}, directions {directions}"
    )
    for d in space.dimensions:
        log.info(f"  {d.key}: {d.distribution}")

    sweep_dir = Path(str(sweeper.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")

    def job_overrides(trial: optuna.Trial) -> list[str]:
        address = TrialAddress(url, s.study_name, trial.number, {"name": s.pruner, **(s.pruner_options or {})})
        return space.overrides(trial.params) + address.env_overrides()

    returns: list[Sequence[JobReturn]] = []
    job_idx = known  # job numbers continue across runs, so a fixed sweep dir keeps earlier job folders
    with Heartbeat(study, s.heartbeat_interval) as heartbeat:
        while True:
            fail_stale_trials(study)
            n = min(s.n_jobs, n_trials - trials_counted(study.get_trials(deepcopy=False)))
            if n <= 0:
                break
            trials, results = _run_batch(sweeper, study, space, heartbeat, n, job_overrides, job_idx, s.max_retry)
            errors = [_tell(study, t, r, objectives, len(directions)) for t, r in zip(trials, results, strict=True)]
            returns.append(results)
            job_idx += n
            config_errors = [e for e in errors if e is not None]
            if config_errors:
                raise config_errors[0]

    result = summary(study, url, space)
    OmegaConf.save(OmegaConf.create(result), sweep_dir / RESULTS_FILE)
    log.info(f"Trials: {result['trials']}; best: {result['best_trials'] or 'none complete yet'}")
    log.info(f"Summary in {sweep_dir / RESULTS_FILE}")
    return returns


def _check(s: CmtOptunaSweeperConf) -> tuple[list[str], list[str] | None]:
    """Validate the settings before anything is created; returns the directions and objective keys."""
    directions = [str(d).lower() for d in (s.directions if s.directions else [s.direction])]
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise SweepConfigError(
            f"unknown direction(s) {bad} (hydra.sweeper.direction/directions): use minimize or maximize"
        )
    objectives = None
    if s.objectives is not None:
        objectives = [s.objectives] if isinstance(s.objectives, str) else [str(k) for k in s.objectives]
        if len(objectives) != len(directions):
            raise SweepConfigError(
                f"hydra.sweeper.objectives names {len(objectives)} metric(s) for {len(directions)} direction(s)"
            )
    check_sampler(s.sampler)
    check_pruner(s.pruner)
    if len(directions) > 1 and s.pruner != "none":
        raise SweepConfigError("Optuna prunes single-objective studies only: set hydra.sweeper.pruner=none")
    if s.n_trials < 1 or s.n_jobs < 1:
        raise SweepConfigError("hydra.sweeper.n_trials and hydra.sweeper.n_jobs must be at least 1")
    return directions, objectives


def _run_batch(
    sweeper: Sweeper,
    study: optuna.Study,
    space: SearchSpace,
    heartbeat: Heartbeat,
    n: int,
    job_overrides: Callable[[optuna.Trial], list[str]],
    job_idx: int,
    max_retry: int,
) -> tuple[list[optuna.Trial], Sequence[JobReturn]]:
    """Ask `n` trials and run their jobs; returns the trials and their jobs' returns, in order."""
    assert sweeper.launcher is not None
    trials: list[optuna.Trial] = []
    try:
        for _ in range(n):
            trials.append(_ask(study, space))
        heartbeat.add(trials)
        batch = [job_overrides(t) for t in trials]
        # Compose every job's config first, so a bad override stops the sweep before any job runs.
        sweeper.validate_batch_is_legal(batch)
        return trials, sweeper.launcher.launch(batch, initial_job_idx=job_idx)
    except BaseException:
        # Not a job's error (those come back in JobReturn) but the sweep's: a bad override, Ctrl-C,
        # a lost cluster. The trials are failed and queued again, as a dead sweep's would be, so the
        # next run of the study gives their parameters another try.
        requeue_interrupted(study, trials, max_retry)
        raise
    finally:
        heartbeat.remove(trials)


def _ask(study: optuna.Study, space: SearchSpace) -> optuna.Trial:
    with warnings.catch_warnings():
        # Optuna expects heartbeats under Study.optimize only; this sweeper records them itself.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask(space.distributions())


def _tell(
    study: optuna.Study, trial: optuna.Trial, ret: JobReturn, objectives: list[str] | None, n_directions: int
) -> ObjectiveError | None:
    """Tell `trial` how its job ended; returns the config error if the job's return does not fit."""
    if ret.hydra_cfg is not None:
        trial.set_user_attr("output_dir", str(ret.hydra_cfg.hydra.runtime.output_dir))
    if ret.status == JobStatus.COMPLETED:
        try:
            values = objective_values(ret.return_value, objectives, n_directions)
        except ObjectiveError as e:
            trial.set_user_attr("fail_reason", str(e))
            study.tell(trial, state=TrialState.FAIL)
            log.error(f"trial {trial.number}: {e}")
            return e
        if isinstance(ret.return_value, Mapping):
            trial.set_user_attr("metrics", _numbers(ret.return_value))
        frozen = study.tell(trial, values)
        log.info(f"trial {trial.number} {frozen.state.name}: {values} {trial.params}")
        return None
    # JobReturn keeps the job's exception here; its `return_value` property would re-raise it.
    error = ret._return_value
    if isinstance(error, optuna.TrialPruned):
        study.tell(trial, state=TrialState.PRUNED)
        log.info(f"trial {trial.number} PRUNED: {error} {trial.params}")
    else:
        trial.set_user_attr("fail_reason", f"{type(error).__name__}: {error}"[:1000])
        study.tell(trial, state=TrialState.FAIL)
        log.warning(f"trial {trial.number} FAIL: {type(error).__name__}: {error} {trial.params}")
    return None


def _numbers(metrics: Mapping) -> dict:
    """The entries of a returned metrics dict that are numbers, as floats (stored with the trial)."""
    out = {}
    for key, value in metrics.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out
