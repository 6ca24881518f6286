"""The one entry point: ``python run.py [stage=NAME] [group=option ...]`` (``--help`` lists the groups)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | dict[str, float]:
    """Run the configured stage; return the metric a sweep optimises, or all metrics when none is named."""
    # Imported here so that --help, --cfg and tab completion answer without loading torch.
    from cmt.stages import optimized_metric, run

    return optimized_metric(cfg, run(cfg))


if __name__ == "__main__":
    main()
