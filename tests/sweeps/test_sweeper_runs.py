"""Real sweeps of the tiny app (tests/sweeps/app) in subprocesses, with SQLite studies in a tmp folder."""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

SPACE = ["x=interval(-5, 5)", "y=range(0, 6)", "opt=a,b"]


def loss(params: dict) -> float:
    """The app's objective (tests/sweeps/app/app.py), recomputed from a trial's parameters."""
    return (params["x"] - 2) ** 2 + (params["y"] - 3) ** 2 + (0.0 if params["opt"] == "b" else 1.0)


def test_hydra_discovers_the_plugin_from_another_folder_without_importing_optuna(tmp_path):
    code = (
        "import sys\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.core.config_store import ConfigStore\n"
        "from hydra.plugins.sweeper import Sweeper\n"
        "print([p.__name__ for p in Plugins.instance().discover(Sweeper)])\n"
        "print(ConfigStore.instance().list('hydra/sweeper'))\n"
        "print('optuna' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    sweepers, configs, optuna_imported = out.stdout.splitlines()
    assert "CmtOptunaSweeper" in sweepers
    assert "cmt_optuna.yaml" in configs
    assert optuna_imported == "False"


def test_a_sweep_persists_its_trials_and_finds_a_good_point(sweep):
    sweep.run(*SPACE, "hydra.sweeper.n_trials=16", "hydra.sweeper.seed=0",
              "hydra.sweeper.sampler_options={n_startup_trials: 5}")
    trials = sweep.trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 16
    for t in trials:
        assert -5 <= t.params["x"] <= 5 and t.params["y"] in range(0, 6) and t.params["opt"] in ("a", "b")
        # The job saw the trial's parameters: its returned loss is the one they give.
        assert t.value == pytest.approx(loss(t.params))
        job_dir = Path(t.user_attrs["output_dir"])
        assert f"x={t.params['x']}" in (job_dir / ".hydra" / "overrides.yaml").read_text()
        assert (job_dir / "trial.txt").read_text() == str(t.number)  # ${oc.env:CMT_OPTUNA_TRIAL}
    study = sweep.study()
    assert study.best_value == min(t.value for t in trials)
    # The optimum is 0; TPE's trials improve on its 5 random ones.
    assert study.best_value < min(2.0, *(t.value for t in trials[:5]))
    (best,) = sweep.results()["best_trials"]
    assert best["number"] == study.best_trial.number
    assert best["overrides"] == [f"{k}={v}" for k, v in study.best_params.items()]


def test_the_default_storage_is_a_sqlite_file_under_results(default_sweep):
    # Jobs run in their own folder (hydra.job.chdir), and still find the study to report to.
    sweep = default_sweep
    sweep.run("x=interval(0, 1)", "hydra.sweeper.n_trials=2", "report_steps=1", "hydra.sweeper.pruner=median")
    results = sweep.results()
    assert (results["study_name"], results["storage"]) == ("app", f"sqlite:///{sweep.db}")
    assert [len(t.intermediate_values) for t in sweep.trials("COMPLETE")] == [1, 1]


def test_a_job_that_raises_is_a_failed_trial_and_the_sweep_goes_on(sweep):
    proc = sweep.run("x=interval(0, 4)", "fail_above=2", "hydra.sweeper.sampler=random", "hydra.sweeper.seed=0",
                     "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=4")
    # n_jobs trials per launcher call, then what is left of n_trials.
    assert [line.split("Launching ")[1] for line in proc.stdout.splitlines() if "Launching" in line] == [
        "4 jobs locally", "2 jobs locally"]
    trials = sweep.trials()
    assert len(trials) == 6
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and all(t.params["x"] > 2 for t in failed)
    assert all("is above fail_above=2" in t.user_attrs["fail_reason"] for t in failed)
    assert {t.number for t in sweep.trials("COMPLETE")} == {t.number for t in trials if t.params["x"] <= 2}
    assert sweep.results()["trials"]["FAIL"] == len(failed)


@pytest.mark.parametrize(
    "name, cls, options",
    [
        ("tpe", "TPESampler", "{n_startup_trials: 2}"),
        ("random", "RandomSampler", "{}"),
        ("nsga2", "NSGAIISampler", "{population_size: 2}"),
        ("grid", "AskTellGridSampler", "{}"),
        pytest.param("gp", "GPSampler", "{n_startup_trials: 2}", marks=pytest.mark.skipif(
            importlib.util.find_spec("scipy") is None, reason="Optuna's GPSampler needs scipy")),
    ],
)
def test_each_sampler_name_runs_its_sampler(sweep, name, cls, options):
    proc = sweep.run("y=range(0, 3)", "opt=a,b", f"hydra.sweeper.sampler={name}", "hydra.sweeper.seed=1",
                     f"hydra.sweeper.sampler_options={options}", "hydra.sweeper.n_trials=4")
    assert f"sampler {cls}," in proc.stdout + proc.stderr
    assert len(sweep.trials("COMPLETE")) == 4


@pytest.mark.skipif(importlib.util.find_spec("scipy") is not None, reason="scipy is installed here")
def test_the_gp_sampler_without_scipy_says_what_to_install(sweep):
    proc = sweep.run("x=interval(0, 1)", "hydra.sweeper.sampler=gp", check=False)
    assert proc.returncode != 0
    assert "pip install scipy" in proc.stderr and "Traceback" not in proc.stderr


def test_the_grid_sampler_walks_every_point_once_and_then_stops(sweep):
    grid = ["y=range(0, 3)", "opt=a,b", "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=10"]
    sweep.run(*grid)
    points = [(t.params["y"], t.params["opt"]) for t in sweep.trials("COMPLETE")]
    assert sorted(points) == list(itertools.product(range(3), ["a", "b"]))
    sweep.run(*grid)  # the grid is done: a second run adds nothing
    assert len(sweep.trials()) == 6


def test_a_bad_sampler_name_is_one_clear_error_line(sweep):
    proc = sweep.run("x=interval(0, 1)", "hydra.sweeper.sampler=bogus", check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "bogus" in line]
    assert lines == ["unknown sampler 'bogus' (hydra.sweeper.sampler): choose one of tpe, gp, random, grid, nsga2"]
    assert "Traceback" not in proc.stderr
    assert not sweep.db.exists()


def test_nsga2_on_two_objectives_returns_a_pareto_front(sweep):
    sweep.run("x=interval(0, 4)", "y=range(0, 6)", "opt=b", "returns=dict", "hydra.sweeper.sampler=nsga2",
              "hydra.sweeper.sampler_options={population_size: 4}", "hydra.sweeper.seed=0",
              "hydra.sweeper.directions=[minimize, minimize]", "hydra.sweeper.objectives=[loss, size]",
              "hydra.sweeper.n_trials=12")
    trials = sweep.trials("COMPLETE")
    assert len(trials) == 12
    for t in trials:
        assert t.values == pytest.approx([loss(t.params | {"opt": "b"}), abs(t.params["x"]) + t.params["y"]])
        assert set(t.user_attrs["metrics"]) == {"loss", "size"}  # numbers only: "note" is text

    def dominates(a, b):
        return all(p <= q for p, q in zip(a.values, b.values, strict=True)) and a.values != b.values

    front = {r["number"] for r in sweep.results()["best_trials"]}
    assert front == {t.number for t in sweep.study().best_trials} and len(front) >= 2
    for t in trials:
        dominated = any(dominates(other, t) for other in trials)
        assert dominated == (t.number not in front)


def test_a_list_return_gives_the_objectives_in_order(sweep):
    sweep.run("x=interval(0, 4)", "returns=list", "hydra.sweeper.directions=[minimize, maximize]",
              "hydra.sweeper.sampler=random", "hydra.sweeper.n_trials=2")
    for t in sweep.trials("COMPLETE"):
        assert t.values == pytest.approx([loss(t.params | {"y": 0, "opt": "a"}), abs(t.params["x"])])
    assert sweep.results()["directions"] == ["minimize", "maximize"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["hydra.sweeper.directions=[minimize, minimize]", "hydra.sweeper.objectives=[loss]"],
         "names 1 metric(s) for 2 direction(s)"),
        (["hydra.sweeper.directions=[minimize, minimize]", "hydra.sweeper.pruner=median"],
         "prunes single-objective studies only"),
        (["hydra.sweeper.direction=up"], "unknown direction(s) ['up']"),
        (["hydra.sweeper.pruner=early"], "unknown pruner 'early'"),
        (["returns=dict"], "the job returned a dict (loss, size, note): set hydra.sweeper.objectives"),
    ],
)
def test_settings_that_cannot_work_stop_with_one_line(sweep, overrides, message):
    proc = sweep.run("x=interval(0, 1)", *overrides, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_study_is_continued_only_in_its_own_direction_and_when_allowed(sweep):
    sweep.run("x=interval(0, 1)", "hydra.sweeper.n_trials=1")
    proc = sweep.run("x=interval(0, 1)", "hydra.sweeper.direction=maximize", check=False)
    assert proc.returncode != 0 and "has directions ['minimize'], this sweep ['maximize']" in proc.stderr
    proc = sweep.run("x=interval(0, 1)", "hydra.sweeper.load_if_exists=false", check=False)
    assert proc.returncode != 0 and "already exists" in proc.stderr
    assert len(sweep.trials()) == 1
