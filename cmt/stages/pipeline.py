"""``stage=pipeline``: run several stages in order in one job, then compare the trained methods with base."""

from __future__ import annotations

import dataclasses
from typing import cast

from omegaconf import DictConfig, OmegaConf, open_dict

from cmt.stages.common import StageContext


def step_config(cfg: DictConfig, step: str) -> DictConfig:
    """The job's config as the pipeline's ``step`` runs it: ``stage`` is that step's own stage config
    (``stage.stages.<step>``). The config is resolved first, so that a value taken from the pipeline's node
    (``${stage.trace}``) or naming the job (``experiment_name``) is the job's."""
    container = cast(dict, OmegaConf.to_container(cfg, resolve=True))
    container["stage"] = container["stage"]["stages"][step]
    step_cfg = OmegaConf.create(container)
    OmegaConf.set_struct(step_cfg, True)
    return step_cfg


def run(ctx: StageContext) -> dict[str, float]:
    """Run ``stage.steps`` in order, each as its own stage (it finds the previous one's output); the final
    eval compares ``base`` with the methods of ``stage.compare``. Returns every step's metrics."""
    from cmt.stages import run_stage  # here: cmt.stages imports this module

    with open_dict(ctx.cfg):
        ctx.cfg.eval.methods = ["base", *ctx.cfg.stage.compare]
    metrics: dict[str, float] = {}
    for step in ctx.cfg.stage.steps:
        print(f"\n=== pipeline step: {step} ===")
        metrics.update(run_stage(dataclasses.replace(ctx, cfg=step_config(ctx.cfg, step), job_cfg=ctx.cfg)))
    return metrics
