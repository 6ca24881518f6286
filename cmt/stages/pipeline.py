"""``stage=pipeline``: run several stages in order in one job, then compare the trained method with base."""

from __future__ import annotations

from omegaconf import open_dict

from cmt.stages.common import StageContext


def run(ctx: StageContext) -> dict[str, float]:
    """Run ``stage.steps`` in order (each finds the previous one's output); the final eval compares
    ``base`` with the methods of ``stage.compare``. Returns every step's metrics."""
    from cmt.stages import RUNNERS

    cfg = ctx.cfg
    unknown = [step for step in cfg.stage.steps if step not in RUNNERS or step == "pipeline"]
    if unknown:
        raise ValueError(f"stage.steps has unknown steps {unknown}; choose from "
                         f"{', '.join(s for s in RUNNERS if s != 'pipeline')}")
    with open_dict(cfg):
        cfg.eval.methods = ["base", *cfg.stage.compare]
    metrics: dict[str, float] = {}
    for step in cfg.stage.steps:
        print(f"\n=== pipeline step: {step} ===")
        metrics.update(RUNNERS[step](ctx))
    return metrics
