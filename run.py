"""The one entry point: ``python run.py [stage=NAME] [group=option ...]`` (``--help`` lists the groups)."""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | dict[str, float]:
    """Run the configured stage; return the metric a sweep optimises, or all metrics when none is named."""
    # Imported here so that --help, --cfg and tab completion answer without loading torch.
    from cmt.errors import CmtError
    from cmt.stages import optimized_metric, run

    try:
        return optimized_metric(cfg, run(cfg))
    except CmtError as error:
        # A fixable input error: one line in a single run; a multirun records it and goes on.
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
