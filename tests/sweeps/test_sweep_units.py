"""The sweeper's pieces without a sweep: search-space syntax, return-value convention, trial address."""

from __future__ import annotations

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.cmt_optuna_sweeper._objectives import ObjectiveError, objective_values
from hydra_plugins.cmt_optuna_sweeper._search_space import parse_search_space
from hydra_plugins.cmt_optuna_sweeper._study import storage_url, trials_counted
from hydra_plugins.cmt_optuna_sweeper.registry import SweepConfigError
from hydra_plugins.cmt_optuna_sweeper.trial_env import TrialAddress, quote

PARSER = OverridesParser.create()


def space(*overrides: str):
    return parse_search_space(overrides, PARSER)


def read_back(override: str):
    """The value a job would see for `override`, after Hydra's parser and OmegaConf's resolution."""
    return OmegaConf.create({"v": PARSER.parse_override(override).value()}).v


@pytest.mark.parametrize(
    "sweep, distribution",
    [
        ("lr=interval(1e-5, 1e-3)", FloatDistribution(1e-5, 1e-3)),
        ("lr=tag(log, interval(1e-5, 1e-3))", FloatDistribution(1e-5, 1e-3, log=True)),
        ("n=int(interval(1, 8))", IntDistribution(1, 8)),
        ("n=tag(log, int(interval(1, 64)))", IntDistribution(1, 64, log=True)),
        # range() excludes its stop, as in Python and Hydra's basic sweeper.
        ("n=range(1, 9)", IntDistribution(1, 8)),
        ("n=range(0, 10, step=3)", IntDistribution(0, 9, step=3)),
        ("n=range(10, 0, step=-3)", IntDistribution(1, 10, step=3)),
        ("f=range(0, 1, step=0.25)", FloatDistribution(0.0, 0.75, step=0.25)),
        ("o=choice(adam, sgd)", CategoricalDistribution(["adam", "sgd"])),
        ("o=adam,sgd", CategoricalDistribution(["adam", "sgd"])),
    ],
)
def test_sweep_syntax_maps_to_optuna_distributions(sweep, distribution):
    (dimension,) = space(sweep).dimensions
    assert dimension.distribution == distribution


def test_every_value_becomes_an_override_hydra_reads_back_unchanged():
    s = space("lr=tag(log, interval(1e-9, 1e-3))", "n=range(1, 4)", "c=choice('a b', [1,2], true, 3, 'x,y')")
    assert s.overrides({"lr": 1e-07}) == ["lr=1e-07"]
    assert read_back(s.overrides({"lr": 1.2345678901234567e-05})[0]) == 1.2345678901234567e-05
    assert s.overrides({"n": 3}) == ["n=3"]
    choices = s.dimensions[2].distribution.choices
    assert [read_back(s.overrides({"c": c})[0]) for c in choices] == ["a b", [1, 2], True, 3, "x,y"]


def test_fixed_overrides_pass_through_and_the_command_line_wins_over_params():
    s = space("x=interval(0, 1)", "model=tiny", "+extra=1", "x=choice(1, 2)")
    assert s.fixed == ["model=tiny", "+extra=1"]
    assert [d.name for d in s.dimensions] == ["x"]
    assert s.dimensions[0].distribution == CategoricalDistribution([1, 2])


def test_a_key_added_with_plus_is_searched_under_its_bare_name():
    (dimension,) = space("+optim.beta=interval(0.8, 0.99)").dimensions
    assert dimension.name == "optim.beta"
    assert dimension.override(0.9) == "+optim.beta=0.9"


def test_grid_lists_the_values_and_refuses_intervals():
    assert space("n=range(0, 3)", "o=a,b").grid() == {"n": [0, 1, 2], "o": ["a", "b"]}
    assert space("n=range(0, 3)", "o=a,b").grid_size() == 6
    with pytest.raises(SweepConfigError, match="lr is an interval"):
        space("lr=interval(0, 1)").grid()


@pytest.mark.parametrize(
    "sweep, message",
    [("lr=tag(lgo, interval(0, 1))", "unknown tag"), ("n=tag(log, range(1, 9))", "log scale needs an interval")],
)
def test_bad_tags_are_config_errors(sweep, message):
    with pytest.raises(SweepConfigError, match=message):
        space(sweep)


@pytest.mark.parametrize(
    "returned, objectives, n, values",
    [
        (0.5, None, 1, [0.5]),
        ([1, 2], None, 2, [1.0, 2.0]),
        ((3,), None, 1, [3.0]),
        ({"val/acc": 0.9, "tokens": 100, "name": "x"}, ["val/acc", "tokens"], 2, [0.9, 100.0]),
        (OmegaConf.create({"loss": 2}), ["loss"], 1, [2.0]),
    ],
)
def test_objective_values_follow_the_convention(returned, objectives, n, values):
    assert objective_values(returned, objectives, n) == values


@pytest.mark.parametrize(
    "returned, objectives, n, message",
    [
        ({"loss": 1.0}, None, 1, "set hydra.sweeper.objectives"),
        (1.0, ["loss"], 1, "picks from a returned dict"),
        ({"loss": 1.0}, ["acc"], 1, r"has no \['acc'\].*it has: loss"),
        ([1.0], None, 2, "2 direction"),
        (None, None, 1, "not numbers"),
        ("0.5", None, 1, "not numbers"),
    ],
)
def test_returns_that_do_not_fit_are_objective_errors(returned, objectives, n, message):
    with pytest.raises(ObjectiveError, match=message):
        objective_values(returned, objectives, n)


@pytest.mark.parametrize(
    "value", ["plain", "it's", "end\\", "a\\'b", "x${y}z", "\\${y}", "sqlite:////tmp/a b/c.db", '{"a": [1, 2]}']
)
def test_quote_reads_back_as_the_same_string(value):
    assert read_back(f"k={quote(value)}") == value


def test_trial_address_survives_the_trip_through_hydra_overrides():
    address = TrialAddress("sqlite:////tmp/x.db", "lr's search", 7, {"name": "median", "n_startup_trials": 2})
    environ = {}
    for override in address.env_overrides():
        parsed = PARSER.parse_override(override)
        environ[parsed.key_or_group.rsplit(".", 1)[-1]] = read_back(f"v={quote(parsed.value())}")
    assert TrialAddress.from_environ(environ) == address
    assert TrialAddress.from_environ({}) is None


def test_storage_url_makes_sqlite_paths_absolute_and_creates_the_folder(tmp_path):
    url = storage_url("sqlite:///results/optuna/s.db", cwd=str(tmp_path))
    assert url == f"sqlite:///{tmp_path}/results/optuna/s.db"
    assert (tmp_path / "results" / "optuna").is_dir()
    assert storage_url("postgresql://u:p@host/db", cwd=str(tmp_path)) == "postgresql://u:p@host/db"
    with pytest.raises(SweepConfigError, match="in-memory"):
        storage_url("sqlite:///:memory:", cwd=str(tmp_path))


def test_an_interrupted_trial_stops_counting_once_its_retry_is_queued(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    done = study.ask()
    study.tell(done, 1.0)
    lost = study.ask()
    study.tell(lost, state=optuna.trial.TrialState.FAIL)
    assert trials_counted(study.get_trials()) == 2
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params={},
            distributions={},
            system_attrs={"failed_trial": lost.number, "retry_history": [lost.number]},
        )
    )
    assert trials_counted(study.get_trials()) == 1
    retry = study.ask()
    assert retry.number == 2
    assert trials_counted(study.get_trials()) == 2
