"""Run the tiny app (tests/sweeps/app) under the cmt_optuna sweeper in a subprocess, with a real SQLite study."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml

from hydra_plugins.cmt_optuna_sweeper.trial_env import rdb_storage
from tests.conftest import default_sigint

APP = Path(__file__).resolve().parent / "app" / "app.py"


@dataclass
class Sweep:
    """One study in `root`: `run` launches the app's multirun on it, the rest reads the database."""

    root: Path
    # Leave storage and study name to the sweeper's defaults (study "app" under results/optuna/).
    defaults: bool = False

    @property
    def study_name(self) -> str:
        return "app" if self.defaults else "test"

    @property
    def db(self) -> Path:
        return self.root / "results" / "optuna" / "app.db" if self.defaults else self.root / "study.db"

    @property
    def sweep_dir(self) -> Path:
        return self.root / "multirun"

    def command(self, *overrides: str, sweep_dir: Path | None = None) -> list[str]:
        return [
            sys.executable, str(APP), "-m", "hydra/sweeper=cmt_optuna",
            f"hydra.sweep.dir={sweep_dir or self.sweep_dir}",
            *([] if self.defaults else [f"hydra.sweeper.storage=sqlite:///{self.db}", "hydra.sweeper.study_name=test"]),
            *overrides,
        ]

    def run(self, *overrides: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a sweep to its end; with `check`, a non-zero exit fails the test showing the output."""
        proc = subprocess.run(
            self.command(*overrides), cwd=self.root, env=_env(), capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            pytest.fail(f"sweep exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def start(self, *overrides: str, sweep_dir: Path | None = None) -> subprocess.Popen:
        """Start a sweep in the background; its output goes to <root>/sweep-<n>.log."""
        log = open(self.root / f"sweep-{len(list(self.root.glob('sweep-*.log')))}.log", "w")
        command = self.command(*overrides, sweep_dir=sweep_dir)
        return subprocess.Popen(command, cwd=self.root, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=default_sigint)

    def study(self) -> optuna.Study:
        # rdb_storage retries while a sweep starting beside this test creates the database's tables.
        return optuna.load_study(study_name=self.study_name, storage=rdb_storage(f"sqlite:///{self.db}"))

    def trials(self, *states: str) -> list[optuna.trial.FrozenTrial]:
        """The study's trials, only those in `states` (e.g. "COMPLETE") when given."""
        trials = self.study().get_trials(deepcopy=False)
        return [t for t in trials if not states or t.state.name in states]

    def results(self) -> dict:
        return yaml.safe_load((self.sweep_dir / "optuna_results.yaml").read_text())


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMT_OPTUNA_", "HYDRA_FULL_ERROR"))}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture
def sweep(tmp_path: Path) -> Sweep:
    return Sweep(tmp_path)


@pytest.fixture
def default_sweep(tmp_path: Path) -> Sweep:
    """A sweep that leaves storage and study name to the sweeper's defaults."""
    return Sweep(tmp_path, defaults=True)
