"""Report intermediate values of a job to its Optuna trial, and stop the job when the pruner says so.

A job launched by the ``cmt_optuna`` sweeper finds its trial through environment variables the sweeper
sets (``CMT_OPTUNA_*``, see ``hydra_plugins/cmt_optuna_sweeper/trial_env.py``). Two ways to use it:

    from cmt.sweeps.pruning import OptunaPruning, report
    trainer = pl.Trainer(callbacks=[OptunaPruning(monitor="val/loss")])   # Lightning
    report(val_loss, step)                                                # any loop

Both raise ``optuna.TrialPruned`` when the study's pruner (``hydra.sweeper.pruner``) decides the trial
is not worth finishing; let it propagate: the sweeper records the trial as PRUNED. Outside a sweep, and
in multi-objective studies (which Optuna cannot prune), they do nothing.

``OptunaPruning`` is built on first use (PEP 562 ``__getattr__``): it subclasses Lightning's Callback,
and importing Lightning takes seconds that a job calling only `report` should not pay.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra_plugins.cmt_optuna_sweeper.trial_env import TrialAddress

__all__ = ["OptunaPruning", "current_trial", "report"]  # noqa: F822 - OptunaPruning: see __getattr__

log = logging.getLogger(__name__)

# The trial of the current job, reopened once per address (in-process launchers run many jobs).
_open: tuple[TrialAddress, Any] | None = None


def current_trial() -> Any | None:
    """The ``optuna.Trial`` this job runs, or None outside an Optuna sweep."""
    global _open
    address = TrialAddress.from_environ()
    if address is None:
        return None
    if _open is None or _open[0] != address:
        _open = (address, address.open_trial())
    return _open[1]


def report(value: float, step: int) -> None:
    """Report `value` at `step` to this job's trial; raise ``optuna.TrialPruned`` if it should stop.

    Args:
        value: the monitored metric (in the study's direction: lower is better when minimising).
        step: increasing position in training (optimizer step or epoch); pruner settings such as
            ``n_warmup_steps`` or hyperband's ``min_resource`` count in these units.

    Raises:
        optuna.TrialPruned: the pruner judged the trial unpromising at this step.
    """
    import optuna

    trial = current_trial()
    if trial is None:
        return
    if len(trial.study.directions) > 1:
        log.debug("multi-objective study: intermediate values are not reported")
        return
    trial.report(float(value), step)
    if trial.should_prune():
        raise optuna.TrialPruned(f"trial {trial.number} pruned at step {step} ({value:.6g})")


def _define_callback() -> type:
    import pytorch_lightning as pl

    class OptunaPruning(pl.Callback):
        """Report `monitor` after every validation and stop the fit when the trial is pruned.

        The step is the trainer's global step, so it grows even when validation runs several times an
        epoch. Sanity-check validation is skipped. A missing `monitor` is an error naming the metrics
        the trainer has, so a typo does not silently disable pruning.
        """

        def __init__(self, monitor: str = "val/loss") -> None:
            self.monitor = monitor

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.sanity_checking or TrialAddress.from_environ() is None:
                return
            if self.monitor not in trainer.callback_metrics:
                raise KeyError(
                    f"OptunaPruning monitors '{self.monitor}', which is not logged; "
                    f"logged: {', '.join(sorted(trainer.callback_metrics))}"
                )
            report(float(trainer.callback_metrics[self.monitor]), trainer.global_step)

    OptunaPruning.__module__ = __name__
    OptunaPruning.__qualname__ = "OptunaPruning"
    return OptunaPruning


def __getattr__(name: str) -> Any:
    if name == "OptunaPruning":
        globals()[name] = _define_callback()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
