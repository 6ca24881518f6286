"""Validate the whole config of a job before anything heavy starts (no logger, model, data or teacher yet).

`validate_config` is called once by `cmt.stages.run`, for every stage. It checks the nodes that the stage
(or each step of ``stage=pipeline``) reads, so that a value nothing reads never blocks a job: ``stage=eval``
does not check ``rl``, ``stage=teach`` does not check ``sft``. A wrong type, a value out of range or a
combination that cannot run fails with one line, ``key=value: what is allowed`` (a `ConfigError`, which
`run.py` prints as ``error: ...`` and exits 1). docs/validation.md lists every check.

RL and reward settings are checked by `cmt.rl.config.validate_rl_config`, the same function the RL stage
calls; the value helpers are shared with it (`cmt.config_checks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from string import Formatter

from omegaconf import DictConfig

from cmt import config_checks as checks
from cmt.config_checks import (
    boolean,
    choice,
    fail,
    get,
    has,
    integer,
    number,
    positive_int,
    sequence,
    string,
)
from cmt.data.suite import RL_PROBLEM_SOURCES
from cmt.errors import ConfigError, ModelNotFoundError
from cmt.gguf import PACKAGE_PREFIX, is_gguf
from cmt.models import ATTENTION_IMPLEMENTATIONS, DTYPES, locate_source
from cmt.rl.config import validate_rl_config
from cmt.teachers import KINDS
from cmt.teachers.filters import SELECTIONS
from cmt.trace import TraceProtocol

INF = math.inf
EVAL_BACKENDS = ("hf", "vllm")
TEACHER_DEVICES = ("auto", "cpu", "cuda")
LOGGER_MODES = ("auto", "online", "offline", "disabled")
RESUME_MODES = ("auto", "never")
# Lightning's accepted `precision` values (lightning_fabric.connector._PRECISION_INPUT), and our `auto`
# (cmt/precision.py). The integers 64, 32 and 16 are accepted as their strings.
PRECISIONS = ("auto", "64", "32", "16", "bf16", "64-true", "32-true", "16-true", "16-mixed", "bf16-true", "bf16-mixed",
              "transformer-engine", "transformer-engine-float16")
# model.hparams: the learning rates are positive numbers, the rest counts (the sft/rl/eval nodes read them).
HPARAM_RATES = ("sft_lr", "rl_lr", "rl_critic_lr")
HPARAM_COUNTS = ("sft_epochs", "sft_batch_size", "max_length", "max_new_tokens", "eval_batch_size",
                 "rl_prompts_per_step", "rl_steps")

Check = Callable[[DictConfig], None]


def _template(cfg: DictConfig, path: str) -> str:
    """A ``str.format`` template whose only field is ``{question}``, which it must contain."""
    value = get(cfg, path)
    if not isinstance(value, str):
        raise fail(path, value, "must be a string with a {question} field")
    try:
        fields = {name for _, name, _, _ in Formatter().parse(value) if name is not None}
    except ValueError as error:
        raise fail(path, value, f"must be a valid str.format template ({error}); write literal braces as "
                               "{{ and }}") from None
    if "question" not in fields:
        raise fail(path, value, "must contain the {question} field")
    if extra := sorted(fields - {"question"}):
        raise fail(path, value, f"may only use the {{question}} field, not {{{extra[0]}}}; write literal "
                               "braces as {{ and }}")
    return value


def _precision(cfg: DictConfig, path: str) -> None:
    value = get(cfg, path)
    if not ((isinstance(value, str) or checks.is_int(value)) and str(value) in PRECISIONS):
        raise fail(path, value, f"choose one of {', '.join(PRECISIONS)}")


def _optimizer(cfg: DictConfig, node: str) -> None:
    """A torch optimizer partial: lr > 0, weight_decay >= 0, betas two numbers in [0, 1)."""
    number(cfg, f"{node}.lr", 0.0, INF, low_open=True, high_open=True)
    if has(cfg, f"{node}.weight_decay"):
        number(cfg, f"{node}.weight_decay", 0.0, INF, high_open=True)
    if has(cfg, f"{node}.betas"):
        betas = get(cfg, f"{node}.betas")
        pair = isinstance(betas, Sequence) and not isinstance(betas, str) and len(betas) == 2
        if not pair or not all(checks.is_number(b) and 0 <= b < 1 for b in betas):
            shown = list(betas) if isinstance(betas, Sequence) and not isinstance(betas, str) else betas
            raise fail(f"{node}.betas", shown, "must be two numbers in [0, 1)")


# --- nodes ----------------------------------------------------------------------------------------------------

def check_common(cfg: DictConfig) -> None:
    """What every job reads: the seed, where it writes, and the metric logger."""
    integer(cfg, "seed", 0, 2 ** 32 - 1)
    string(cfg, "paths.artifacts")
    string(cfg, "paths.results")
    if has(cfg, "optimized_metric"):
        string(cfg, "optimized_metric", optional=True)
    if has(cfg, "logger.mode"):
        choice(cfg, "logger.mode", LOGGER_MODES)


def check_model(cfg: DictConfig) -> None:
    """The student: where it comes from, its dtype and attention kernel, LoRA (checked only when enabled), hparams."""
    string(cfg, "model.name")
    source = string(cfg, "model.source")
    path = string(cfg, "model.path", optional=True)
    for key in ("install", "cache_dir"):
        if has(cfg, f"model.{key}"):
            string(cfg, f"model.{key}", optional=True)
    # A package that is not installed, or a GGUF file without the gguf package: the fix is an install
    # command, better said now than after the teacher has run. (Folders are checked when the model loads.)
    if source.startswith(PACKAGE_PREFIX) or is_gguf(path or ""):
        try:
            locate_source(cfg.model)
        except ModelNotFoundError as error:
            raise ConfigError(str(error)) from None
    choice(cfg, "model.dtype", tuple(DTYPES))
    if get(cfg, "model.attn_implementation", default=None) is not None:
        choice(cfg, "model.attn_implementation", ATTENTION_IMPLEMENTATIONS)
    if has(cfg, "model.activation_checkpointing"):
        boolean(cfg, "model.activation_checkpointing")
    if get(cfg, "model.logits_chunk_tokens", default=None) is not None:
        positive_int(cfg, "model.logits_chunk_tokens")
    if boolean(cfg, "model.lora.enabled"):
        positive_int(cfg, "model.lora.r")
        # models.wrap_lora passes int(alpha) to PEFT: 0.5 would silently become 0 (no update at all).
        alpha = get(cfg, "model.lora.alpha")
        if not checks.is_number(alpha) or alpha < 1 or alpha != int(alpha):
            raise fail("model.lora.alpha", alpha, "must be a whole number >= 1")
        number(cfg, "model.lora.dropout", 0.0, 1.0, high_open=True)
        target = get(cfg, "model.lora.target_modules", default="all-linear")
        items = [target] if isinstance(target, str) else list(target) if isinstance(target, Sequence) else None
        if not items or not all(isinstance(t, str) and t for t in items):
            raise fail("model.lora.target_modules", target if items is None or isinstance(target, str) else items,
                       "must be all-linear, a module name, or a non-empty list of module names")
    for name in HPARAM_RATES:
        if has(cfg, f"model.hparams.{name}"):
            number(cfg, f"model.hparams.{name}", 0.0, INF, low_open=True, high_open=True)
    for name in HPARAM_COUNTS:
        if has(cfg, f"model.hparams.{name}"):
            positive_int(cfg, f"model.hparams.{name}")


def check_prompt(cfg: DictConfig) -> None:
    """The prompt every method sees, and the few-shot exemplars."""
    _template(cfg, "prompt.template")
    target_prefix = get(cfg, "prompt.target_prefix")
    if not isinstance(target_prefix, str):
        raise fail("prompt.target_prefix", target_prefix, "must be a string")
    boolean(cfg, "prompt.use_chat_template")
    exemplars = sequence(cfg, "prompt.exemplars", non_empty=False) if has(cfg, "prompt.exemplars") else []
    for index, exemplar in enumerate(exemplars):
        for field in ("question", "answer"):
            value = exemplar.get(field) if isinstance(exemplar, Mapping) else None
            if not isinstance(value, str) or not value:
                raise fail(f"prompt.exemplars.{index}.{field}", value, "must be a non-empty string")
    integer(cfg, "prompt.shots", 0, len(exemplars))


def check_benchmark(cfg: DictConfig) -> None:
    """Problems per split and the evaluated splits (of each member of a suite)."""
    string(cfg, "benchmark.name")
    integer(cfg, "benchmark.eval_n", optional=True)
    if has(cfg, "benchmark.train") and get(cfg, "benchmark.train") is not None:
        integer(cfg, "benchmark.train.n", optional=True)
        integer(cfg, "benchmark.train.held_out", 0)
        choice(cfg, "benchmark.train.rl_problems", RL_PROBLEM_SOURCES)
    suite = get(cfg, "benchmark.suite", default=None)
    members = [f"benchmark.suite.{name}" for name in suite] if suite else ["benchmark"]
    for member in members:
        if member != "benchmark":
            integer(cfg, f"{member}.eval_n", optional=True)
        for index, entry in enumerate(sequence(cfg, f"{member}.splits")):
            for field in ("split", "tag"):
                value = entry.get(field) if isinstance(entry, Mapping) else None
                if not isinstance(value, str) or not value:
                    raise fail(f"{member}.splits.{index}.{field}", value, "must be a non-empty string")


def check_teach(cfg: DictConfig) -> None:
    """Building the training sets: sizes, kinds, prompts, filters and the selection of samples."""
    integer(cfg, "teach.n", optional=True)
    kinds = sequence(cfg, "teach.kinds")
    if unknown := [k for k in kinds if k not in KINDS]:
        raise fail("teach.kinds", kinds, f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise fail("teach.kinds", kinds, "each kind at most once")
    string(cfg, "teach.prompts.system", optional=True)
    for kind in kinds:
        _template(cfg, f"teach.prompts.{kind}")
    n_samples = positive_int(cfg, "teach.n_samples")
    choice(cfg, "teach.select", SELECTIONS)
    positive_int(cfg, "teach.filters.max_words")
    allowed = sequence(cfg, "teach.filters.allowed_numbers", non_empty=False)
    if not all(checks.is_number(a) for a in allowed):
        raise fail("teach.filters.allowed_numbers", allowed, "must be a list of finite numbers")
    string(cfg, "teach.cache_dir")
    boolean(cfg, "teach.progress")
    # A trace teacher (rule) writes one trace per question; a chat teacher samples at its temperature.
    if n_samples > 1 and has(cfg, "teacher.temperature") and get(cfg, "teacher.temperature") == 0:
        raise fail("teach.n_samples", n_samples, "more than 1 needs teacher.temperature > 0 (greedy decoding "
                                                 "repeats one answer)")


def check_teacher(cfg: DictConfig) -> None:
    """The teacher's settings that it has (a rule teacher has only a name)."""
    string(cfg, "teacher._target_")
    string(cfg, "teacher.name")
    optional = {
        "temperature": lambda key: number(cfg, key, 0.0, INF, high_open=True),
        "top_p": lambda key: number(cfg, key, 0.0, 1.0, low_open=True),
        "max_tokens": lambda key: positive_int(cfg, key),
        "batch_size": lambda key: positive_int(cfg, key),
        "concurrency": lambda key: positive_int(cfg, key),
        "max_retries": lambda key: integer(cfg, key, 0),
        "timeout_s": lambda key: number(cfg, key, 0.0, INF, low_open=True, high_open=True),
        "connect_timeout_s": lambda key: number(cfg, key, 0.0, INF, low_open=True, high_open=True),
        "backoff_s": lambda key: number(cfg, key, 0.0, INF, high_open=True),
        "backoff_max_s": lambda key: number(cfg, key, 0.0, INF, high_open=True),
        "model": lambda key: string(cfg, key),
        "base_url": lambda key: string(cfg, key),
        "api_key_env": lambda key: string(cfg, key, optional=True),
        "dtype": lambda key: choice(cfg, key, tuple(DTYPES)),
        "device": lambda key: choice(cfg, key, TEACHER_DEVICES),
        "use_chat_template": lambda key: boolean(cfg, key),
        "seed": lambda key: integer(cfg, key, 0),
    }
    for name, check in optional.items():
        if has(cfg, f"teacher.{name}"):
            check(f"teacher.{name}")
    if has(cfg, "teacher.base_url") and not get(cfg, "teacher.base_url").startswith(("http://", "https://")):
        raise fail("teacher.base_url", get(cfg, "teacher.base_url"), "must start with http:// or https://")
    extra = get(cfg, "teacher.extra_body", default=None)
    if extra is not None and not isinstance(extra, Mapping):
        raise fail("teacher.extra_body", extra, "must be a mapping of request fields or null")


def check_sft(cfg: DictConfig) -> None:
    """Supervised fine-tuning: sizes, the held-out fraction, the optimizer and its warmup, and whether a model
    trained by an earlier job may be reused."""
    for key in ("epochs", "batch_size", "max_length"):
        positive_int(cfg, f"sft.{key}")
    boolean(cfg, "reuse_sft")
    number(cfg, "sft.val_fraction", 0.0, 1.0, high_open=True)
    _optimizer(cfg, "sft.optimizer")
    if has(cfg, "sft.scheduler.num_warmup_steps"):
        integer(cfg, "sft.scheduler.num_warmup_steps", 0)


def check_trainer(cfg: DictConfig) -> None:
    """The Lightning Trainer of the training stages."""
    string(cfg, "trainer._target_")
    if has(cfg, "trainer.precision"):
        _precision(cfg, "trainer.precision")
    if has(cfg, "trainer.devices"):
        devices = get(cfg, "trainer.devices")
        if isinstance(devices, bool) or (checks.is_int(devices) and devices < 1 and devices != -1) \
                or not (checks.is_int(devices) or isinstance(devices, str) or hasattr(devices, "__len__")):
            raise fail("trainer.devices", devices, "must be auto, -1 (all), a count >= 1 or a list of GPU indices")
    if has(cfg, "trainer.gradient_clip_val") and get(cfg, "trainer.gradient_clip_val") is not None:
        number(cfg, "trainer.gradient_clip_val", 0.0, INF, high_open=True)
    if has(cfg, "trainer.log_every_n_steps"):
        positive_int(cfg, "trainer.log_every_n_steps")


def check_strategy(cfg: DictConfig) -> None:
    """Refuse FSDP (``trainer.strategy=fsdp`` or an FSDP ``_target_``) before any model loads.

    The training stages cannot run under it yet: Lightning starts FSDP's extra processes by re-running the
    whole command, so every process would teach, save and write result rows, and each would save its own
    shard of the weights as if it were the model (docs/experiments.md, "Multi-GPU training").
    """
    strategy = get(cfg, "trainer.strategy", default=None)
    target = str(strategy.get("_target_", "")) if isinstance(strategy, Mapping) else str(strategy or "")
    if "fsdp" in target.lower():
        raise fail("trainer.strategy", target, "FSDP training is not supported yet (the stages do not gather "
                                               "sharded weights before saving): use trainer=ddp, or LoRA "
                                               "(model.lora.enabled=true) on trainer=gpu")


def check_resume(cfg: DictConfig) -> None:
    """Resume and scratch checkpoints of the training stages (docs/resume.md)."""
    choice(cfg, "resume", RESUME_MODES)
    integer(cfg, "checkpoint.every_n_steps", minimum=0)
    positive_int(cfg, "checkpoint.keep")


def check_eval(cfg: DictConfig, methods_key: str = "eval.methods") -> None:
    """Evaluation: the methods, sizes, calibration bins, sampling and the generation backend."""
    from cmt.stages.common import METHODS  # here: cmt.stages imports this module

    methods = sequence(cfg, methods_key, non_empty=methods_key == "eval.methods")
    if unknown := [m for m in methods if m not in METHODS]:
        raise fail(methods_key, methods, f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    integer(cfg, "eval.n", optional=True)
    for key in ("max_new_tokens", "batch_size", "ece_bins"):
        positive_int(cfg, f"eval.{key}")
    boolean(cfg, "eval.save_predictions")
    samples = positive_int(cfg, "eval.samples")
    temperature = number(cfg, "eval.temperature", 0.0, INF, high_open=True)
    if samples > 1 and temperature <= 0:
        raise fail("eval.samples", samples, "more than 1 needs eval.temperature > 0 (greedy samples are identical)")
    if choice(cfg, "eval.backend", EVAL_BACKENDS) == "vllm":
        from cmt import vllm_engine

        vllm_engine.require_vllm("eval.backend")
        vllm_engine.validate_vllm_config(get(cfg, "vllm"))


def check_rl(cfg: DictConfig, reward_key: str) -> None:
    """The rl node with the stage's reward (`validate_rl_config`), and what RL reads from elsewhere."""
    try:
        validate_rl_config(cfg.rl, get(cfg, reward_key))
    except ConfigError as error:
        message = str(error)
        # RewardConfig names its keys reward.*; the baseline's live under baseline_reward.
        if reward_key != "reward" and message.startswith("reward."):
            raise ConfigError(reward_key + message.removeprefix("reward")) from None
        raise
    integer(cfg, "teach.n", optional=True)
    positive_int(cfg, "eval.batch_size")  # the batch of RL's validation generations
    if get(cfg, "rl.rollout", default="hf") == "vllm":
        from cmt import vllm_engine

        vllm_engine.validate_vllm_config(get(cfg, "vllm"))
    precision = get(cfg, "trainer.precision", default=None)
    if str(precision) in ("16", "16-mixed"):
        raise fail("trainer.precision", precision, "the RL stages step their optimizers themselves, and float16's "
                                                   "loss scaling would reach the gradient clipping unscaled: use "
                                                   "bf16-mixed or 32-true")


def check_trace(cfg: DictConfig) -> None:
    """How CCRL's student generates (``stage.trace`` and its cues; `cmt.trace`), for stage=ccrl and pipelines."""
    node = get(cfg, "stage")
    TraceProtocol.from_mapping(node)
    cue = node.get("chat_execution_cue")
    if cue is not None and (not isinstance(cue, str) or not cue.strip()):
        raise fail("stage.chat_execution_cue", cue, "must be a non-blank string, or null to use stage.execution_cue")


def check_pretrain(cfg: DictConfig) -> None:
    """``stage=pretrain``: corpus, tokenizer, architecture (sizes that divide) and training."""
    for key in ("documents", "tokenizer_documents", "vocab_size", "epochs", "batch_size", "max_length"):
        positive_int(cfg, f"stage.{key}")
    number(cfg, "stage.drill_fraction", 0.0, 1.0)
    arch = {key: positive_int(cfg, f"stage.architecture.{key}")
            for key in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                        "max_positions")}
    if arch["hidden_size"] % arch["num_heads"]:
        raise fail("stage.architecture.num_heads", arch["num_heads"],
                   f"must divide stage.architecture.hidden_size={arch['hidden_size']}")
    if arch["num_heads"] % arch["num_kv_heads"]:
        raise fail("stage.architecture.num_kv_heads", arch["num_kv_heads"],
                   f"must divide stage.architecture.num_heads={arch['num_heads']}")
    if get(cfg, "stage.max_length") > arch["max_positions"]:
        raise fail("stage.max_length", get(cfg, "stage.max_length"),
                   f"must be at most stage.architecture.max_positions={arch['max_positions']}")
    _precision(cfg, "stage.precision")
    choice(cfg, "stage.attn_implementation", ATTENTION_IMPLEMENTATIONS)
    string(cfg, "stage.output_dir")
    _optimizer(cfg, "stage.optimizer")
    if has(cfg, "stage.scheduler.num_warmup_steps"):
        integer(cfg, "stage.scheduler.num_warmup_steps", 0)


def check_pipeline(cfg: DictConfig) -> None:
    """``stage=pipeline``: known steps (not pipeline itself); the compared methods are checked as eval's."""
    steps = sequence(cfg, "stage.steps")
    allowed = [name for name in STAGE_CHECKS if name != "pipeline"]
    if unknown := [s for s in steps if s not in allowed]:
        raise fail("stage.steps", steps, f"unknown steps {unknown}; choose from {', '.join(allowed)}")
    sequence(cfg, "stage.compare", non_empty=False)


def _eval_of_pipeline(cfg: DictConfig) -> None:
    check_eval(cfg, "stage.compare")


# What each stage reads, checked in this order (a pipeline checks its own node, then each step's).
STAGE_CHECKS: dict[str, tuple[Check, ...]] = {
    "pretrain": (check_pretrain, check_trainer, check_strategy),
    "teach": (check_benchmark, check_teacher, check_teach),
    "comt_sft": (check_model, check_prompt, check_sft, check_trainer, check_strategy, check_resume),
    "cot_sft": (check_model, check_prompt, check_sft, check_trainer, check_strategy, check_resume),
    "ccrl": (check_model, check_prompt, check_benchmark, lambda cfg: check_rl(cfg, "reward"), check_trace,
             check_trainer, check_resume),
    "rl": (check_model, check_prompt, check_benchmark, lambda cfg: check_rl(cfg, "baseline_reward"),
           check_trainer, check_resume),
    "eval": (check_model, check_prompt, check_benchmark, check_eval),
    "pipeline": (check_pipeline,),
}


def stage_checks(cfg: DictConfig) -> list[Check]:
    """The checks of the job's stage (of each step, for a pipeline), each once, in order."""
    name = choice(cfg, "stage.name", tuple(STAGE_CHECKS))
    if name != "pipeline":
        return list(STAGE_CHECKS[name])
    check_pipeline(cfg)
    ordered: list[Check] = []
    for step in get(cfg, "stage.steps"):
        for check in STAGE_CHECKS[step]:
            check = _eval_of_pipeline if check is check_eval else check
            if check not in ordered:
                ordered.append(check)
    return ordered


def validate_config(cfg: DictConfig) -> None:
    """Check every value the job's stage reads; returns nothing when the config can run.

    Raises:
        ConfigError: One line naming the first offending key, its value and what is allowed.
    """
    check_common(cfg)
    for check in stage_checks(cfg):
        check(cfg)
