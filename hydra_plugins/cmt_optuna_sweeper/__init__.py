"""cmt's Optuna sweeper for Hydra: ``python run.py -m hydra/sweeper=cmt_optuna ...``.

A Hydra sweeper plugin on the current Optuna (the released ``hydra-optuna-sweeper`` pins optuna<3):
the study lives in a database (SQLite by default) so a stopped sweep resumes and several workers share
one search; samplers and pruners are picked by short names; jobs report intermediate values for pruning
through ``cmt.sweeps.pruning``. User guide: ``docs/sweeps.md``.

Modules that Hydra's plugin scan imports (so they stay light, Optuna is imported only when sweeping):
``config`` (the schema, registered as ``hydra/sweeper=cmt_optuna``), ``sweeper`` (the plugin class),
``registry`` (sampler and pruner names), ``trial_env`` (how a job finds its trial). The scan skips the
``_``-prefixed modules that do the work: ``_search_space``, ``_study``, ``_objectives``, ``_grid``,
``_impl``. The scanned modules do not use ``from __future__ import annotations``: the scan executes a
module before registering it in ``sys.modules``, where ``dataclasses`` looks string annotations up.
"""
