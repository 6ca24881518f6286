"""The sweeper's config schema, registered so that ``hydra/sweeper=cmt_optuna`` selects it.

Every field can be set in a sweep file (``hydra: sweeper: ...``) or on the command line
(``hydra.sweeper.n_trials=50``). See docs/sweeps.md for the search-space syntax of ``params``.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class CmtOptunaSweeperConf:
    _target_: str = "hydra_plugins.cmt_optuna_sweeper.sweeper.CmtOptunaSweeper"

    # Name of the Optuna study. Runs with the same name and storage add to one study: that is how a
    # stopped sweep resumes and how several workers share one search. Give each search its own name.
    study_name: str = "${hydra.job.name}"
    # SQLAlchemy URL of the database holding the study. A relative SQLite path resolves against the
    # folder the sweep was started in, and its folder is created.
    storage: str = "sqlite:///results/optuna/${.study_name}.db"
    # Continue the study if it exists (false: stop with an error when the name is taken).
    load_if_exists: bool = True

    # minimize | maximize: the direction of a single objective.
    direction: str = "minimize"
    # One direction per objective for a multi-objective search, e.g. [maximize, minimize].
    # When set, `direction` is not used.
    directions: list[str] | None = None
    # Which entries of the dict a job returns are the objectives: one key, or a list of keys in the
    # order of `directions`. null: the job returns a number, or a list of numbers (one per direction).
    objectives: Any = None

    # Trials the study should hold when the sweep ends, counting those of earlier runs of the same
    # study and of other workers (a trial interrupted and re-run counts once).
    n_trials: int = 20
    # Trials asked per launcher call: a parallel launcher runs them side by side, the basic launcher
    # one after another.
    n_jobs: int = 1

    # tpe | gp | random | grid | nsga2 (gp needs scipy; grid walks choice() and range() values).
    sampler: str = "tpe"
    # Seed of the sampler (null: random). A run that joins a study with k trials uses seed + k.
    seed: int | None = None
    # Extra keyword arguments of the Optuna sampler class, a dict such as {n_startup_trials: 5} for tpe.
    # (Typed Any with null for none, so that `hydra.sweeper.sampler_options={...}` works without a +.)
    sampler_options: Any = None

    # median | hyperband | none. Only jobs that report intermediate values can be pruned.
    pruner: str = "none"
    # Extra keyword arguments of the Optuna pruner class, a dict such as {n_startup_trials: 3} for median.
    pruner_options: Any = None

    # Seconds between the heartbeats this sweeper records for its running trials. A running trial
    # whose heartbeat is older than `grace_period` (null: twice the interval) belongs to a sweep that
    # died: the next sweep of the study marks it FAIL and re-runs its parameters. null: no heartbeats.
    heartbeat_interval: int | None = 60
    grace_period: int | None = None
    # How many times an interrupted trial's parameters are re-run.
    max_retry: int = 1

    # The search space: override key -> sweep, e.g. {sft.optimizer.lr: "tag(log, interval(1e-5, 1e-3))"}.
    # Non-sweep values are fixed overrides of every trial. Command-line overrides win over these.
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="cmt_optuna", node=CmtOptunaSweeperConf, provider="cmt")
