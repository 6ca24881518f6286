"""A stage's config says what it is (``_target_``, method, parent, data or reward); a pipeline runs each step
with that step's own config, while its result rows keep the job's identity."""

from __future__ import annotations

from cmt.artifacts import TRAINED_BY
from cmt.stages.common import StageContext, config_hash
from cmt.stages.pipeline import step_config
from tests.conftest import CONF


def test_each_pipeline_step_runs_with_its_own_stage_config(cfg_factory):
    cfg = cfg_factory(["experiment=tiny_paper_main"])
    ccrl, rl, sft = (step_config(cfg, step).stage for step in ("ccrl", "rl", "cot_sft"))
    assert (ccrl._target_, ccrl.method, ccrl.parent, ccrl.reward, ccrl.trace) == (
        "cmt.stages.rl.run", "comt_ccrl", "comt_sft", "reward", "plan_execute")
    assert (rl._target_, rl.method, rl.parent, rl.reward, rl.trace) == (
        "cmt.stages.rl.run", "cot_sft_rl", "cot_sft", "baseline_reward", "direct")
    assert (sft._target_, sft.method, sft.parent, sft.data) == ("cmt.stages.sft.run", "cot_sft", "base", "cot")
    # What the step does not own is the job's: the whole config but `stage` is unchanged.
    assert {k: v for k, v in step_config(cfg, "ccrl").items() if k != "stage"} == {
        k: v for k, v in cfg.items() if k != "stage"}


def test_values_taken_from_the_pipeline_node_are_the_jobs(cfg_factory):
    """The config is resolved before the step's node takes `stage`'s place: ``${stage.trace}`` in the ccrl
    step and in the experiment's name stays the pipeline's, even in a step (teach) that has no trace."""
    cfg = cfg_factory(["stage.trace=direct", "experiment_name=ablation_${stage.trace}"])
    assert step_config(cfg, "ccrl").stage.trace == "direct"
    assert step_config(cfg, "teach").experiment_name == "ablation_direct"
    assert "trace" not in step_config(cfg, "teach").stage


def test_a_steps_result_rows_carry_the_jobs_stage_and_config_hash(cfg_factory):
    cfg = cfg_factory([])
    job = StageContext(cfg=cfg, logger=None, run_id="r")
    step = StageContext(cfg=step_config(cfg, "eval"), logger=None, run_id="r", job_cfg=cfg)
    assert step.row_identity() == job.row_identity()
    assert step.row_identity()["stage"] == "pipeline" and step.row_identity()["config_hash"] == config_hash(cfg)
    assert StageContext(cfg=cfg_factory(["stage=eval"]), logger=None, run_id="r").row_identity()["stage"] == "eval"


def test_the_hint_of_which_stage_trains_a_method_matches_the_stage_configs(cfg_factory):
    """A missing checkpoint's error names the stage that trains it (`cmt.artifacts.TRAINED_BY`); every stage
    config that declares a method must be that method's entry."""
    declared = {}
    for path in sorted((CONF / "stage").glob("*.yaml")):
        node = cfg_factory([f"stage={path.stem}"]).stage
        if "method" in node:
            declared[node.method] = path.stem
    assert declared == TRAINED_BY
