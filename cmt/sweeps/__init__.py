"""Hyperparameter sweeps: what a job uses while an Optuna sweep (``hydra/sweeper=cmt_optuna``) runs it.

``cmt.sweeps.pruning`` reports intermediate values to the job's trial and stops unpromising trials;
outside a sweep it does nothing. The sweeper itself is the Hydra plugin in
``hydra_plugins/cmt_optuna_sweeper``; how to write and run searches: ``docs/sweeps.md``.
"""
