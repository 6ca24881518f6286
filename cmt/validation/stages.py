"""Config checks of the stage nodes: what a training stage declares (method, parent, data, reward, trace) and
what a pipeline runs (its steps, their inputs, the methods it compares). Part of `cmt.validation`.

A stage node is ``stage`` for a single-stage job and ``stage.stages.<step>`` for each step of a pipeline; the
checks here take its key, so a message names the key a user sets. The pipeline's input check is the one check
that looks at the disk: a step whose input no earlier step makes must find it there, so that a missing
checkpoint or training set fails before the first step runs rather than after hours of the ones before it.
"""

from __future__ import annotations

from omegaconf import DictConfig

from cmt.artifacts import MissingInputError, require_checkpoint, training_set_path
from cmt.config_checks import choice, fail, get, sequence, string
from cmt.errors import ConfigError
from cmt.teachers import KINDS
from cmt.trace import TraceProtocol

# The stage functions (``_target_`` of conf/stage/*.yaml) these checks tell apart: the pipeline runs other
# stages; SFT and RL train a method (they declare method and parent); teach writes the training sets; eval
# reads checkpoints.
PIPELINE = "cmt.stages.pipeline.run"
SFT = "cmt.stages.sft.run"
RL = "cmt.stages.rl.run"
TEACH = "cmt.stages.teach.run"
EVAL = "cmt.stages.evaluate.run"


def check_method(cfg: DictConfig, stage: str) -> None:
    """A training stage's ``method`` (not ``base``, the untouched model) and its ``parent``."""
    method = string(cfg, f"{stage}.method")
    if method == "base":
        raise fail(f"{stage}.method", method, "base is the untouched model; name the method this stage trains")
    if string(cfg, f"{stage}.parent") == method:
        raise fail(f"{stage}.parent", method, "a method cannot start from its own checkpoint")


def check_sft_data(cfg: DictConfig, stage: str) -> None:
    """The training set an SFT stage reads (``data``: a kind stage=teach writes), and that a model it may share
    (``reuse_sft``) starts from the base: the store's key sees a parent's name, not its weights."""
    choice(cfg, f"{stage}.data", KINDS)
    parent = get(cfg, f"{stage}.parent")
    if get(cfg, "reuse_sft", default=False) is True and parent != "base":
        raise fail(f"{stage}.parent", parent, "reuse_sft shares only models fine-tuned from base: set "
                                              "reuse_sft=false to fine-tune from another method")


def check_reward_node(cfg: DictConfig, stage: str) -> str:
    """The key of an RL stage's reward node (``reward`` or ``baseline_reward``): a node of the root config."""
    string(cfg, f"{stage}.reward")
    key = str(get(cfg, f"{stage}.reward"))
    if "." in key or not isinstance(cfg.get(key), DictConfig):
        raise fail(f"{stage}.reward", key, "name a reward node of the root config: reward or baseline_reward")
    return key


def check_trace(cfg: DictConfig, stage: str) -> None:
    """How an RL stage's student generates (``trace`` and its cues; `cmt.trace`)."""
    node = get(cfg, stage)
    TraceProtocol.from_mapping(node, where=stage)
    cue = node.get("chat_execution_cue")
    if cue is not None and (not isinstance(cue, str) or not cue.strip()):
        raise fail(f"{stage}.chat_execution_cue", cue,
                   f"must be a non-blank string, or null to use {stage}.execution_cue")


def pipeline_steps(cfg: DictConfig) -> list[str]:
    """The stage nodes of a pipeline's steps (``stage.stages.<step>``), after checking that each names a stage
    of ``stage.stages`` other than a pipeline."""
    steps = sequence(cfg, "stage.steps")
    stages = get(cfg, "stage.stages")
    if unknown := [s for s in steps if s not in stages or get(stages, f"{s}._target_", "stage.stages") == PIPELINE]:
        choices = [name for name in stages if stages[name].get("_target_") != PIPELINE]
        raise fail("stage.steps", steps, f"unknown steps {unknown}; choose from {', '.join(choices)}")
    return [f"stage.stages.{step}" for step in steps]


def check_pipeline_inputs(cfg: DictConfig) -> None:
    """Each step's input is made by an earlier step or is on disk: an SFT step's training set, a training
    step's parent, an eval step's compared methods (`cmt.artifacts`). So a pipeline cannot fail for a missing
    input after hours of the steps before."""
    trained, taught = {"base"}, False
    for node in pipeline_steps(cfg):
        target = get(cfg, f"{node}._target_")
        taught = taught or target == TEACH
        if target == EVAL:
            for method in sequence(cfg, "stage.compare", non_empty=False):
                _trained_or_on_disk(cfg, method, trained, "stage.compare")
        if target not in (SFT, RL):
            continue
        _trained_or_on_disk(cfg, get(cfg, f"{node}.parent"), trained, f"{node}.parent")
        kind = get(cfg, f"{node}.data") if target == SFT else None
        if kind is not None and taught and kind not in get(cfg, "teach.kinds"):
            raise fail(f"{node}.data", kind, f"the teach step writes only teach.kinds={list(get(cfg, 'teach.kinds'))}: "
                                             f"add {kind} there")
        if kind is not None and not taught and not training_set_path(cfg, kind).is_file():
            raise fail(f"{node}.data", kind, f"no step before it runs teach and there is no training set at "
                                             f"{training_set_path(cfg, kind)}: add teach to stage.steps")
        trained.add(get(cfg, f"{node}.method"))


def _trained_or_on_disk(cfg: DictConfig, method: str, trained: set[str], key: str) -> None:
    """A method that no step before trains must have its checkpoint on disk (the error names ``key``)."""
    if method in trained:
        return
    try:
        require_checkpoint(cfg, method)
    except MissingInputError as error:
        raise ConfigError(f"{key}={method!r}: no step of the pipeline trains it first, and {error}") from None
