"""How a job learns which Optuna trial it is: four environment variables set by the sweeper.

The sweeper adds ``++hydra.job.env_set.CMT_OPTUNA_*=...`` to each job's overrides, so Hydra sets the
variables around the task function, with any launcher (in-process, joblib, SLURM). Environment
variables rather than config keys because they leave the task config (and its hash) unchanged, show up
in the job's ``.hydra/hydra.yaml``, reach subprocesses the job starts, and are absent outside a sweep,
which is how ``cmt.sweeps.pruning`` knows to do nothing there.
"""

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STORAGE = "CMT_OPTUNA_STORAGE"
STUDY = "CMT_OPTUNA_STUDY"
TRIAL = "CMT_OPTUNA_TRIAL"
PRUNER = "CMT_OPTUNA_PRUNER"

# SQLite waits this long for a lock held by another writer (sweeper, job, other workers).
SQLITE_TIMEOUT_S = 60
# Tries to open a storage whose tables another process may be creating at the same moment.
OPEN_ATTEMPTS = 5


@dataclass(frozen=True)
class TrialAddress:
    """Where a trial lives and how it is judged: enough for a job to reopen it."""

    storage: str
    study_name: str
    number: int
    # The pruner as {"name": ..., **options}, the same the sweeper's study uses.
    pruner: dict[str, Any]

    def env_overrides(self) -> list[str]:
        """Hydra overrides that set this address in the job's environment."""
        values = {
            STORAGE: self.storage,
            STUDY: self.study_name,
            TRIAL: str(self.number),
            PRUNER: json.dumps(self.pruner, sort_keys=True),
        }
        return [f"++hydra.job.env_set.{name}={quote(value)}" for name, value in values.items()]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "TrialAddress | None":
        """The address set by the sweeper, or None when this process is not an Optuna trial."""
        if TRIAL not in environ:
            return None
        return cls(
            storage=environ[STORAGE],
            study_name=environ[STUDY],
            number=int(environ[TRIAL]),
            pruner=json.loads(environ[PRUNER]),
        )

    def open_trial(self) -> Any:
        """Reopen the trial from its storage, judged by the sweeper's pruner (an ``optuna.Trial``)."""
        import optuna

        from hydra_plugins.cmt_optuna_sweeper.registry import make_pruner

        options = {k: v for k, v in self.pruner.items() if k != "name"}
        storage = rdb_storage(self.storage)
        study = optuna.load_study(
            study_name=self.study_name,
            storage=storage,
            # The job never samples; a random sampler keeps opening the trial cheap.
            sampler=optuna.samplers.RandomSampler(),
            pruner=make_pruner(self.pruner["name"], options),
        )
        study_id = storage.get_study_id_from_name(self.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.number)
        return optuna.Trial(study, trial_id)


def rdb_storage(url: str, **kwargs: Any) -> Any:
    """An Optuna RDBStorage for `url`; SQLite waits for locks instead of failing at once.

    Workers started together on a new database race to create its tables: the loser's CREATE TABLE or
    version row fails. Opening again finds the tables, so a few retries make the race harmless.
    """
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except (IntegrityError, OperationalError):
            if attempt == OPEN_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def quote(value: str) -> str:
    r"""`value` as a single-quoted Hydra override value that reads back as exactly `value`.

    Two escapings stack: OmegaConf's (a literal ``${`` is written ``\${``, backslashes before it doubled)
    and Hydra's quoted strings (backslashes before a quote or at the end doubled, a quote written ``\'``).
    """
    value = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    return "'" + value.replace("'", "\\'") + "'"
