"""Config checks of the student and its training: the model (and LoRA), SFT, the Lightning Trainer and its
strategy, resume checkpoints, RL with its reward, and pretraining. Part of
`cmt.validation`; one function per node, each failing with one ``key=value: what is allowed`` line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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
    string,
)
from cmt.errors import ConfigError, ModelNotFoundError
from cmt.gguf import PACKAGE_PREFIX, is_gguf
from cmt.models import ATTENTION_IMPLEMENTATIONS, DTYPES, locate_source
from cmt.rl.config import validate_rl_config
from cmt.validation.stages import check_reward_node

INF = math.inf
RESUME_MODES = ("auto", "never")
# Lightning's accepted `precision` values (lightning_fabric.connector._PRECISION_INPUT), and our `auto`
# (cmt/precision.py). The integers 64, 32 and 16 are accepted as their strings.
PRECISIONS = ("auto", "64", "32", "16", "bf16", "64-true", "32-true", "16-true", "16-mixed", "bf16-true", "bf16-mixed",
              "transformer-engine", "transformer-engine-float16")
# model.hparams: the learning rates are positive numbers, the rest counts (the sft/rl/eval nodes read them).
HPARAM_RATES = ("sft_lr", "rl_lr", "rl_critic_lr")
HPARAM_COUNTS = ("sft_epochs", "sft_batch_size", "max_length", "max_new_tokens", "eval_batch_size",
                 "rl_prompts_per_step", "rl_steps")


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


def check_rl(cfg: DictConfig, stage: str) -> None:
    """The rl node with the reward node the stage names (`validate_rl_config`), and what RL reads elsewhere."""
    reward_key = check_reward_node(cfg, stage)
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
