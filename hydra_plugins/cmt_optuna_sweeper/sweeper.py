"""The Hydra Sweeper plugin class; the work is in ``_impl`` (imported when a sweep starts, with Optuna)."""

from typing import Any

from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra_plugins.cmt_optuna_sweeper.config import CmtOptunaSweeperConf


class CmtOptunaSweeper(Sweeper):
    """Searches hyperparameters with an Optuna study kept in a database (see docs/sweeps.md)."""

    def __init__(self, **settings: Any) -> None:
        # Hydra passes the fields of CmtOptunaSweeperConf, containers as DictConfig/ListConfig.
        plain = {
            k: OmegaConf.to_container(v, resolve=True) if isinstance(v, (DictConfig, ListConfig)) else v
            for k, v in settings.items()
        }
        self.settings = CmtOptunaSweeperConf(**plain)
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from hydra_plugins.cmt_optuna_sweeper._impl import run_sweep

        return run_sweep(self, self.settings, arguments)
