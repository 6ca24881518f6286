"""The tiny Hydra job the sweeper tests launch: a quadratic objective with switches (see conf/config.yaml).

    python tests/sweeps/app/app.py -m hydra/sweeper=cmt_optuna 'x=interval(-5, 5)' 'y=range(0, 6)'
"""

import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig


def loss(cfg: DictConfig) -> float:
    return (cfg.x - 2) ** 2 + (cfg.y - 3) ** 2 + (0.0 if cfg.opt == "b" else 1.0)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    Path("trial.txt").write_text(str(cfg.trial))  # the job's folder: hydra.job.chdir is true
    if cfg.fail_above is not None and cfg.x > cfg.fail_above:
        raise ValueError(f"x={cfg.x} is above fail_above={cfg.fail_above}")
    value = loss(cfg)
    if cfg.report_steps:
        from cmt.sweeps.pruning import report

        # Intermediate values fall towards the final loss, keeping the trials' order at every step.
        for step in range(cfg.report_steps):
            report(value + cfg.report_steps - step, step)
    if cfg.lightning_epochs:
        from lightning_job import fit

        fit(value, cfg.lightning_epochs)
    time.sleep(cfg.sleep)
    size = abs(cfg.x) + cfg.y
    if cfg.returns == "list":
        return [value, size]
    if cfg.returns == "dict":
        return {"loss": value, "size": size, "note": "not a number"}
    return value


if __name__ == "__main__":
    main()
