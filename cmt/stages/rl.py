"""``stage=ccrl`` and ``stage=rl``: RL from an SFT checkpoint of the same model.

- ``ccrl`` (method ``comt_ccrl``) starts from the CoMT-SFT checkpoint with the configured reward
  (``reward=ccrl`` by default: outcome plus calibrated step confidence) and plans, then executes.
- ``rl`` (method ``cot_sft_rl``, the paper's standard baseline) starts from the CoT-SFT checkpoint with
  ``baseline_reward`` (``reward@baseline_reward=outcome_only`` by default: the outcome reward only) and
  answers directly.

Each stage's config (conf/stage/ccrl.yaml, rl.yaml) declares its method, parent, reward node and trace.

The config is validated before any model loads. The policy is trained by `cmt.modules.rl.RLModule` and
saved where ``stage=eval`` looks for the method. Training checkpoints itself and resumes a killed run of the
same config (`cmt.checkpointing`, docs/resume.md).
"""

from __future__ import annotations

import copy
import math
import random
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Sampler

from cmt.artifacts import checkpoint_dir, require_checkpoint
from cmt.checkpointing import Checkpointer
from cmt.data.prompts import render_prompt
from cmt.data.suite import rl_problems
from cmt.models import load_model, save_model
from cmt.modules.rl import RLModule
from cmt.rl.config import validate_rl_config
from cmt.rl.critic import Critic
from cmt.stages.common import StageContext
from cmt.stages.sft import build_trainer
from cmt.trace import TraceProtocol

# The config nodes that decide what an RL run computes: a checkpoint made under other values is not resumed.
FINGERPRINT_KEYS = ("seed", "model", "prompt", "rl", "reward", "baseline_reward", "teach.n", "benchmark", "trainer",
                    "stage.parent", "stage.reward", "stage.trace", "stage.plan_end", "stage.execution_cue",
                    "stage.chat_execution_cue")


def step_indices(n_problems: int, steps: int, per_step: int, seed: int) -> list[int]:
    """``steps * per_step`` problem indices: shuffled passes over the problems, as many as needed."""
    rng = random.Random(seed)
    indices: list[int] = []
    while len(indices) < steps * per_step:
        order = list(range(n_problems))
        rng.shuffle(order)
        indices += order
    return indices[:steps * per_step]


class StepBatches(Sampler[list[int]]):
    """The problem indices of each RL step, one batch per step, from step ``start`` on.

    A resumed run starts after the steps the killed run took; the length stays the number of all steps,
    as Lightning's restored loop counters expect.
    """

    def __init__(self, indices: list[int], per_step: int, start: int = 0):
        self.batches = [indices[i:i + per_step] for i in range(0, len(indices), per_step)]
        self.start = start

    def __iter__(self):
        start, self.start = self.start, 0
        return iter(self.batches[start:])

    def __len__(self) -> int:
        return len(self.batches)


# The name of the frozen copy of the SFT adapter that a LoRA policy carries as its KL reference.
REFERENCE_ADAPTER = "sft_reference"


def build_reference(policy: torch.nn.Module, parent: Path | None, kl_coef: float
                    ) -> tuple[torch.nn.Module | None, str | None]:
    """The KL reference: the frozen SFT model, as ``(separate model, reference adapter name)``.

    - No KL (``kl_coef == 0``): neither.
    - A full model: a frozen copy of it.
    - A LoRA policy loaded from an SFT adapter (``parent`` holds ``adapter_config.json``): RL keeps training
      that adapter, so the SFT model is the adapter *as it was when RL started*. It is loaded a second time
      as a frozen adapter named :data:`REFERENCE_ADAPTER` (a few hundred MB for r=64 on 8B, against a
      second copy of the whole model); `cmt.modules.rl.RLModule` activates it for reference passes.
    - A LoRA policy with fresh adapters over SFT weights: the policy with adapters off is the SFT model.
    """
    if kl_coef <= 0:
        return None, None
    if not hasattr(policy, "disable_adapter"):
        return copy.deepcopy(policy).eval().requires_grad_(False), None
    if parent is not None and (Path(parent) / "adapter_config.json").is_file():
        policy.load_adapter(str(parent), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
        return None, REFERENCE_ADAPTER
    return None, None


def build_critic(cfg, checkpoint) -> Critic:
    """A critic initialised from the same checkpoint as the policy (its own LoRA adapters for LoRA models)."""
    trunk_model, _ = load_model(cfg.model, checkpoint)
    trunk = trunk_model.get_base_model() if hasattr(trunk_model, "get_base_model") else trunk_model
    return Critic(trunk.model, trunk.config.hidden_size).train()


def trace_protocol(cfg, tokenizer=None) -> TraceProtocol:
    """How the stage's student generates in RL: ``stage.trace`` (``plan_execute`` for CCRL, ``direct`` for the
    CoT-SFT + RL baseline, whose student writes its numbers in one go).

    The execution cue is ``stage.chat_execution_cue`` when prompts go through the tokenizer's chat template
    (a cue that reads as the assistant's own words), else ``stage.execution_cue``.

    Raises:
        ConfigError: A bad ``stage.trace``, ``stage.plan_end`` or cue (one line naming the key).
    """
    node = dict(cfg.stage)
    chat = bool(cfg.prompt.use_chat_template) and getattr(tokenizer, "chat_template", None)
    if chat and node.get("chat_execution_cue") is not None:
        node["execution_cue"] = node["chat_execution_cue"]
    return TraceProtocol.from_mapping(node)


def rollout_engine(cfg, parent, policy, tokenizer):
    """The colocated vLLM engine of ``rl.rollout=vllm``, started once for the stage (`cmt.rl.vllm_rollouts`).

    It loads the policy's starting weights: the SFT checkpoint (full weights), or for a LoRA policy the base
    model, serving the adapter (or, with ``vllm.lora`` merged, the weights with it folded in) once the first
    sync saves it.
    """
    from cmt.lora_merge import lora_mode
    from cmt.models import resolve_source
    from cmt.rl.vllm_rollouts import VLLMRollouts
    from cmt.vllm_engine import engine_options

    lora_rank = int(policy.peft_config["default"].r) if hasattr(policy, "peft_config") else None
    merge = lora_rank is not None and lora_mode(cfg.vllm) == "merged"
    base = resolve_source(cfg.model) if lora_rank is not None or parent is None else str(parent)
    options = engine_options(cfg.vllm, str(cfg.model.get("dtype", "auto")), int(cfg.seed))
    return VLLMRollouts(base, tokenizer, options, Path(cfg.paths.output_dir) / "vllm-sync",
                        None if merge else lora_rank)


def run(ctx: StageContext) -> dict[str, float]:
    """Train the stage's ``method`` (``comt_ccrl``, ``cot_sft_rl``) by RL from its ``parent`` and save it."""
    cfg = ctx.cfg
    method_name = str(cfg.stage.method)
    reward_cfg = cfg[str(cfg.stage.reward)]
    reward = validate_rl_config(cfg.rl, reward_cfg)
    parent = require_checkpoint(cfg, str(cfg.stage.parent))
    steps, per_step = int(cfg.rl.steps), int(cfg.rl.prompts_per_step)
    # Neither set holds a question SFT trained on (fresh problems on the synthetic world; held-out validation).
    chosen = rl_problems(cfg.benchmark, cfg.teach.n, steps * per_step, int(cfg.rl.val_n))
    train, val_problems = chosen.train, chosen.validation

    policy, tokenizer = load_model(cfg.model, parent)
    reference, reference_adapter = build_reference(policy, parent, float(cfg.rl.kl_coef))
    critic = build_critic(cfg, parent) if cfg.rl.advantage == "gae" else None
    critic_optimizer = None
    if critic is not None:
        critic_optimizer = instantiate(OmegaConf.merge(cfg.rl.optimizer, {"lr": cfg.rl.critic.lr}))

    def render(question: str) -> str:
        return render_prompt(question, cfg.prompt.template, tokenizer, cfg.prompt.use_chat_template)

    trace = trace_protocol(cfg, tokenizer)
    engine = rollout_engine(cfg, parent, policy, tokenizer) if cfg.rl.get("rollout", "hf") == "vllm" else None
    module = RLModule(policy, tokenizer, train, val_problems, render, cfg.rl, reward, instantiate(cfg.rl.optimizer),
                      reference=reference, critic=critic, critic_optimizer=critic_optimizer,
                      val_batch_size=int(cfg.eval.batch_size),
                      logits_chunk_tokens=cfg.model.get("logits_chunk_tokens"), reference_adapter=reference_adapter,
                      trace=trace, rollout_engine=engine)
    out = checkpoint_dir(cfg, method_name)
    checkpointer = Checkpointer.from_config(cfg, out, FINGERPRINT_KEYS)
    resume = checkpointer.resume_point(cfg.resume)
    batches = StepBatches(step_indices(len(train), steps, per_step, cfg.seed), per_step,
                          start=resume.batches_in_epoch if resume else 0)
    train_loader = DataLoader(range(len(train)), batch_sampler=batches, collate_fn=list)
    val_loader = DataLoader(list(range(len(val_problems))), batch_size=len(val_problems) or 1, collate_fn=list)
    # Gradients are clipped by the module (manual optimisation), at rl.max_grad_norm. Every RL step is logged:
    # each is a whole sample-score-update round, and a run has tens to hundreds of them, not thousands.
    trainer = build_trainer(ctx, 1, checkpointer, val_check_interval=min(int(cfg.rl.val_interval), steps),
                            limit_val_batches=1.0 if val_problems else 0, check_val_every_n_epoch=None,
                            gradient_clip_val=None, strategy="auto", devices=1, log_every_n_steps=1)
    print(f"{method_name}: {steps} RL steps of {per_step} prompts x {cfg.rl.group_size} rollouts "
          f"({cfg.rl.name}, reward {reward_cfg.name}, trace {trace.name}, {trainer.precision} precision) from {parent}")
    policy.train()
    started = time.perf_counter()
    try:
        checkpointer.fit(trainer, module, resume, train_dataloaders=train_loader, val_dataloaders=val_loader)
    finally:
        if engine is not None:
            engine.close()
    train_time = checkpointer.earlier_time_s + time.perf_counter() - started
    if reference_adapter is not None:
        # The checkpoint holds the trained adapter only (the reference is its parent's, already on disk).
        module.policy.delete_adapter(reference_adapter)
    save_model(module.policy, tokenizer, out)
    # stage=eval generates for this method the way it was trained (cmt/trace.py).
    trace.save(out)
    ctx.save_config(out.parent)
    checkpointer.clear()
    rollout_tokens = sum(h["train/completion_length"] for h in module.history) * per_step * int(cfg.rl.group_size)
    ctx.record_training(method_name, {"train_time_s": train_time, "train_tokens": rollout_tokens})
    first = module.history[0]
    window = max(1, len(module.history) // 4)
    early = sum(h["reward/total"] for h in module.history[:window]) / window
    late = sum(h["reward/total"] for h in module.history[-window:]) / window
    print(f"{method_name}: mean reward {early:.3f} (first {window} steps) -> {late:.3f} (last {window}); "
          f"saved to {out} ({train_time:.0f} s)")
    # Per-step values come from the last step's history (restored on resume), not from the trainer's last
    # logged values: a resumed run's trainer has not seen what was logged before the kill, and a statistic
    # undefined at some steps (NaN, not logged) would otherwise keep an older step's value.
    last = {k: v for k, v in module.history[-1].items() if not math.isnan(v)}
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()
              if (torch.is_tensor(v) or isinstance(v, float)) and k not in module.history[-1]}
    metrics = {f"{method_name}/{k.replace('/', '_')}": v for k, v in {**logged, **last}.items()}
    metrics.update({f"{method_name}/reward_early": early, f"{method_name}/reward_late": late,
                    f"{method_name}/accuracy_first_step": first["train/accuracy"],
                    f"{method_name}/train_time_s": train_time})
    return metrics
