"""Pruning: a job reports intermediate values (cmt.sweeps.pruning) and the sweeper records PRUNED trials."""

from __future__ import annotations

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from cmt.sweeps.pruning import current_trial, report
from hydra_plugins.cmt_optuna_sweeper.trial_env import TrialAddress

MEDIAN = {"name": "median", "n_startup_trials": 1}


def enter_trial(monkeypatch, study: optuna.Study, url: str, pruner: dict) -> optuna.Trial:
    """Ask a trial and set the environment variables the sweeper's overrides would give its job."""
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    parser = OverridesParser.create()
    for override in TrialAddress(url, study.study_name, trial.number, pruner).env_overrides():
        parsed = parser.parse_override(override)
        monkeypatch.setenv(parsed.key_or_group.rsplit(".", 1)[-1], OmegaConf.create({"v": parsed.value()}).v)
    return trial


def test_outside_a_sweep_report_does_nothing(monkeypatch):
    for name in ("CMT_OPTUNA_STORAGE", "CMT_OPTUNA_STUDY", "CMT_OPTUNA_TRIAL", "CMT_OPTUNA_PRUNER"):
        monkeypatch.delenv(name, raising=False)
    assert current_trial() is None
    report(1e9, step=0)  # no study anywhere: nothing to report to, nothing raised


def test_report_records_values_and_raises_when_the_pruner_says_so(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=url, pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    good = study.ask()
    for step in range(3):
        good.report(1.0, step)
    study.tell(good, 1.0)

    promising = enter_trial(monkeypatch, study, url, MEDIAN)
    report(0.5, step=0)  # better than the median of complete trials at step 0: goes on
    hopeless = enter_trial(monkeypatch, study, url, MEDIAN)
    with pytest.raises(optuna.TrialPruned, match=f"trial {hopeless.number} pruned at step 0"):
        report(2.0, step=0)
    assert study.trials[promising.number].intermediate_values == {0: 0.5}
    assert study.trials[hopeless.number].intermediate_values == {0: 2.0}


def test_report_in_a_multi_objective_study_does_nothing(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=url, directions=["minimize", "minimize"])
    trial = enter_trial(monkeypatch, study, url, {"name": "none"})
    report(1.0, step=0)
    assert study.trials[trial.number].intermediate_values == {}


@pytest.mark.parametrize(
    "pruner, options",
    [("median", "{n_startup_trials: 2}"), ("hyperband", "{min_resource: 1, max_resource: 5, reduction_factor: 2}")],
)
def test_a_sweep_records_pruned_trials(sweep, pruner, options):
    sweep.run("x=interval(-5, 5)", "report_steps=5", f"hydra.sweeper.pruner={pruner}",
              f"hydra.sweeper.pruner_options={options}", "hydra.sweeper.sampler=random", "hydra.sweeper.seed=0",
              "hydra.sweeper.n_trials=8")
    pruned, complete = sweep.trials("PRUNED"), sweep.trials("COMPLETE")
    assert pruned and complete and len(pruned) + len(complete) == 8
    assert all(len(t.intermediate_values) < 5 for t in pruned)  # stopped before the last step
    assert all(sorted(t.intermediate_values) == [0, 1, 2, 3, 4] for t in complete)
    assert sweep.results()["trials"]["PRUNED"] == len(pruned)


@pytest.mark.slow
def test_the_lightning_callback_prunes_a_fit(sweep):
    sweep.run("x=interval(-5, 5)", "lightning_epochs=4", "hydra.sweeper.pruner=median",
              "hydra.sweeper.pruner_options={n_startup_trials: 1}", "hydra.sweeper.sampler=random",
              "hydra.sweeper.seed=0", "hydra.sweeper.n_trials=4")
    pruned, complete = sweep.trials("PRUNED"), sweep.trials("COMPLETE")
    assert pruned and complete
    # One batch an epoch: global steps 1..4. Sanity-check validation (at step 0) is not reported.
    assert all(sorted(t.intermediate_values) == [1, 2, 3, 4] for t in complete)
    assert all(0 < len(t.intermediate_values) < 4 and 0 not in t.intermediate_values for t in pruned)


def test_the_lightning_callback_names_the_logged_metrics_when_its_monitor_is_missing(tmp_path, monkeypatch):
    import pytorch_lightning as pl

    from cmt.sweeps.pruning import OptunaPruning

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    enter_trial(monkeypatch, study, url, {"name": "none"})
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.callback_metrics["val/loss"] = 1.0
    with pytest.raises(KeyError, match="monitors 'val/acc', which is not logged; logged: val/loss"):
        OptunaPruning(monitor="val/acc").on_validation_end(trainer, pl.LightningModule())
