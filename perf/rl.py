"""One RL step: our RLModule (rl=grpo, outcome-only reward, as `cmt.stages.rl` builds it) vs TRL's GRPOTrainer.

Both sides: the same weights, prompts, group size, prompts per step, maximum completion length, sampling
(temperature, no top-k/top-p), loss (clipped surrogate, per-sequence token mean, group-std-scaled
advantages, k3 KL to a frozen reference in the loss at the same beta), optimizer and mini/micro batches
(TRL: ``per_device_train_batch_size`` = micro, ``gradient_accumulation_steps`` = mini / micro,
``steps_per_generation`` = rollouts / micro, so one generation round is one of our steps). The reward is
the outcome-only preset's: 1 for a correct final answer + 0.1 for a well-formed ending, computed by the
same `cmt` functions on both sides. Seconds per step are timed between step ends after ``skip_steps``.

With ``rl.rollout=vllm`` (bench rl_vllm) our side samples from a colocated vLLM engine kept in step with the
policy by a full-weight sync, and TRL's side samples as ``vllm.trl_sampler`` says (:func:`trl`).
"""

from __future__ import annotations

import math
import time
from typing import Any

from perf import data, models
from perf.flops import flops_per_token, mfu, peak_flops
from perf.measure import current_rss_mb, median, step_times, sync, window


def compose(settings: dict[str, Any], workdir: str, rollout: str = "hf"):
    """The composed config as an RL stage sees it: ``rl=grpo`` with the harness's sizes and ``rl.rollout``, the
    ``vllm`` node from perf/config.yaml's ``vllm`` section, ``model.dtype``, ``seed``, and ``workdir`` as the
    job's folder (where `cmt.stages.rl.rollout_engine` puts the synced weights)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from perf.settings import ROOT

    s = settings["rl"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = hydra_compose("config", overrides=["rl=grpo", "logger=none", f"rl.rollout={rollout}"])
    with open_dict(cfg):
        for key in ("group_size", "prompts_per_step", "max_new_tokens", "mini_batch_size", "micro_batch_size",
                    "kl_coef", "temperature", "steps"):
            cfg.rl[key] = float(s[key]) if key in ("kl_coef", "temperature") else int(s[key])
        cfg.rl.optimizer.lr = float(s["lr"])
        cfg.rl.val_n = 1
        cfg.rl.rollout_is_cap = float(s["rollout_is_cap"])
        for key in ("max_model_len", "kv_cache_memory_bytes", "gpu_memory_utilization", "tensor_parallel_size",
                    "enforce_eager"):
            cfg.vllm[key] = settings["vllm"][key]
        cfg.model.dtype = settings["dtype"]
        cfg.seed = int(settings["seed"])
        cfg.paths.output_dir = str(workdir)
    return cfg


def rl_config(cfg):
    """The resolved ``rl`` node of a config from :func:`compose`, and the outcome-only reward settings."""
    from omegaconf import OmegaConf

    from cmt.rl.config import validate_rl_config

    rl = OmegaConf.create(OmegaConf.to_container(cfg.rl, resolve=True))
    reward = validate_rl_config(rl, cfg.baseline_reward)
    return rl, reward


def step_flops(shape: dict[str, Any], prompt_tokens: float, completion_tokens: float, rollouts: int,
               with_reference: bool) -> float:
    """Model FLOPs of one step: sampling (forward), reference forward, and the policy's forward + backward."""
    n, layers, hidden = shape["matmul_params"], shape["layers"], shape["hidden"]
    context = (prompt_tokens + completion_tokens) / 2
    sequence = rollouts * (prompt_tokens + completion_tokens)
    generate = rollouts * (prompt_tokens + completion_tokens) * flops_per_token(n, layers, hidden, context, False)
    train = sequence * flops_per_token(n, layers, hidden, context, True)
    reference = sequence * flops_per_token(n, layers, hidden, context, False) if with_reference else 0.0
    return generate + train + reference


def _problems(settings: dict[str, Any]):
    s = settings["rl"]
    return data.synthetic_problems(int(s["prompts_per_step"]) * int(s["steps"]), int(settings["seed"]))


def ours(settings: dict[str, Any], workdir: str, rollout: str = "hf") -> dict[str, Any]:
    """``steps`` steps of `cmt.modules.rl.RLModule` under Lightning, set up as `cmt.stages.rl.run` does.

    Args:
        rollout: ``rl.rollout``: hf (the built-in sampler) or vllm (a colocated engine started by
            `cmt.stages.rl.rollout_engine` from the saved weights and synced with the policy before every
            step; the sync's seconds are timed apart and are part of ``generate_s``).
    """
    import copy

    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    from cmt.modules.rl import RLModule
    from cmt.stages.rl import rollout_engine

    s = settings["rl"]
    device = settings["device"]
    cfg = compose(settings, workdir, rollout)
    rl, reward = rl_config(cfg)
    policy, tokenizer = models.load(f"{workdir}/model", settings["dtype"], device)
    loaded_rss = current_rss_mb()
    models.checkpointing(policy, bool(settings.get("activation_checkpointing")))
    reference = copy.deepcopy(policy).eval().requires_grad_(False) if float(rl.kl_coef) > 0 else None
    problems = _problems(settings)
    engine, sync_s, engine_start_s = None, [], 0.0
    if rollout == "vllm":
        started = time.perf_counter()
        engine = rollout_engine(cfg, f"{workdir}/model", policy, tokenizer)
        engine_start_s = time.perf_counter() - started
        engine.sync = _timed(engine.sync, sync_s)
    module = RLModule(policy, tokenizer, problems, [], lambda q: data.render(q, tokenizer), rl, reward,
                      instantiate(rl.optimizer), reference=reference, rollout_engine=engine)
    per_step = int(s["prompts_per_step"])
    loader = DataLoader(list(range(len(problems))), batch_size=per_step, collate_fn=list)
    step_ends: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_end(self, *args, **kwargs):
            sync(device)
            step_ends.append(time.perf_counter())

    precision = {"float32": "32-true", "bfloat16": "bf16-true", "float16": "16-true"}[settings["dtype"]]
    trainer = pl.Trainer(accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1, precision=precision,
                         max_epochs=1, logger=False, enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0,
                         gradient_clip_val=None, callbacks=[Clock()])
    policy.train()
    try:
        trainer.fit(module, train_dataloaders=loader)
    finally:
        if engine is not None:
            engine.close()
    start, end, steps = window(step_ends, int(s["skip_steps"]))
    timed = module.history[-steps:]
    # The median step: one step slowed by a load spike elsewhere on the machine does not move it.
    step_s, step_s_mean = median(step_times(step_ends, int(s["skip_steps"]))), (end - start) / steps
    completion = sum(h["train/completion_length"] for h in timed) / len(timed)
    prompt = _mean_prompt_tokens(tokenizer, problems)
    rollouts = per_step * int(s["group_size"])
    shape = models.describe(policy)
    flops = step_flops(shape, prompt, completion, rollouts, float(rl.kl_coef) > 0)
    result = {"step_s": step_s, "step_s_mean": step_s_mean, "timed_steps": steps, "completion_tokens": completion,
              "prompt_tokens": prompt, "rollouts": rollouts, "sampler": rollout,
              "generate_s": median([h["timing/generate"] for h in timed]),
              "score_s": median([h["timing/score"] for h in timed]),
              "update_s": median([h["timing/update"] for h in timed]),
              "reward": sum(h["reward/total"] for h in timed) / len(timed),
              "mfu": mfu(flops, step_s, peak_flops(device, settings["dtype"], settings.get("peak_flops"))),
              "step_flops": flops, "rss_after_load_mb": loaded_rss}
    if engine is not None:
        result.update({"sync_s": median(sync_s[-steps:]), "engine_start_s": engine_start_s,
                       "is_mismatch_mean": median([h["rollout/is_mismatch_mean"] for h in timed])})
    return result


def _timed(function, seconds: list[float]):
    """``function``, appending the seconds of each call to ``seconds``."""

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    return timed


def _mean_prompt_tokens(tokenizer, problems) -> float:
    ids = tokenizer([data.render(p.question, tokenizer) for p in problems]).input_ids
    return sum(len(x) for x in ids) / len(ids)


def trl(settings: dict[str, Any], workdir: str, sampler: str = "hf") -> dict[str, Any]:
    """The same steps with TRL's GRPOTrainer.

    Args:
        sampler: hf (TRL's default: transformers ``generate``) or vllm (``use_vllm=True``,
            ``vllm_mode="colocate"``: an engine in the trainer's process, weights loaded into it tensor by
            tensor; the engine settings of perf/config.yaml's ``vllm`` section, the KV cache through
            ``VLLM_CPU_KVCACHE_SPACE`` since TRL passes no KV size; its truncated importance sampling per
            token at our ``rollout_is_cap``).
    """
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from cmt.data.answers import extract_strict, is_correct
    from cmt.rewards.steps import extract_answer

    s = settings["rl"]
    device = settings["device"]
    policy, tokenizer = models.load(f"{workdir}/model", settings["dtype"], device)
    loaded_rss = current_rss_mb()
    problems = _problems(settings)
    dataset = Dataset.from_dict({"prompt": [data.render(p.question, tokenizer) for p in problems],
                                 "gold": [p.gold for p in problems]})
    eos = tokenizer.eos_token_id

    def outcome(completions, gold, **_):
        return [float(is_correct(extract_answer(c, "flexible"), g)) for c, g in zip(completions, gold, strict=True)]

    def well_formed(completions, completion_ids, **_):
        return [float(eos in ids and extract_strict(c) is not None)
                for c, ids in zip(completions, completion_ids, strict=True)]

    rollouts = int(s["prompts_per_step"]) * int(s["group_size"])
    micro, mini = int(s["micro_batch_size"]), int(s["mini_batch_size"])
    updates_per_step = rollouts // mini
    step_ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            step_ends.append(time.perf_counter())

    args = GRPOConfig(
        output_dir=f"{workdir}/trl_grpo", per_device_train_batch_size=micro, gradient_accumulation_steps=mini // micro,
        steps_per_generation=rollouts // micro, num_generations=int(s["group_size"]),
        max_completion_length=int(s["max_new_tokens"]), temperature=float(s["temperature"]), top_p=1.0, top_k=0,
        beta=float(s["kl_coef"]), loss_type="grpo", scale_rewards="group", epsilon=0.2, num_iterations=1,
        reward_weights=[1.0, 0.1], learning_rate=float(s["lr"]), lr_scheduler_type="constant", warmup_steps=0,
        optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0, max_grad_norm=1.0,
        max_steps=int(s["steps"]) * updates_per_step, shuffle_dataset=False, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=not device.startswith("cuda"),
        bf16=settings["dtype"] == "bfloat16", fp16=settings["dtype"] == "float16", log_completions=False,
        seed=int(settings["seed"]), disable_tqdm=True, dataloader_num_workers=0,
        **models.trainer_checkpointing(GRPOConfig, bool(settings.get("activation_checkpointing"))),
        **_trl_vllm_args(settings, sampler))
    trainer = GRPOTrainer(model=policy, reward_funcs=[outcome, well_formed], args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[Clock()])
    trainer.train()
    rounds = step_ends[updates_per_step - 1::updates_per_step]
    start, end, steps = window(rounds, int(s["skip_steps"]))
    step_s, step_s_mean = median(step_times(rounds, int(s["skip_steps"]))), (end - start) / steps
    logged = [h for h in trainer.state.log_history if "completions/mean_length" in h][-steps * updates_per_step:]
    completion = sum(h["completions/mean_length"] for h in logged) / max(len(logged), 1) if logged else float("nan")
    metrics = {"reward": sum(h.get("reward", 0.0) for h in logged) / len(logged)} if logged else {}
    prompt = _mean_prompt_tokens(tokenizer, problems)
    shape = models.describe(policy)
    flops = step_flops(shape, prompt, float(s["max_new_tokens"]) if math.isnan(completion) else completion,
                       rollouts, float(s["kl_coef"]) > 0)
    return {"step_s": step_s, "step_s_mean": step_s_mean, "timed_steps": steps, "completion_tokens": completion,
            "prompt_tokens": prompt, "rollouts": rollouts, "reward": float(metrics.get("reward", float("nan"))),
            "sampler": sampler,
            "mfu": mfu(flops, step_s, peak_flops(device, settings["dtype"], settings.get("peak_flops"))),
            "rss_after_load_mb": loaded_rss}


def _trl_vllm_args(settings: dict[str, Any], sampler: str) -> dict[str, Any]:
    """GRPOConfig's vLLM arguments for ``sampler`` (none for hf); sets the CPU engine's KV cache size."""
    import os

    if sampler != "vllm":
        return {}
    from cmt.vllm_engine import on_cpu

    engine = settings["vllm"]
    if on_cpu() and engine["kv_cache_memory_bytes"] is not None:
        # GiB, as vllm-cpu reads it (TRL's colocated LLM(...) takes no KV cache size).
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(int(engine["kv_cache_memory_bytes"]) / 2**30)))
    return {"use_vllm": True, "vllm_mode": "colocate", "vllm_max_model_length": engine["max_model_len"],
            "vllm_enable_sleep_mode": False, "vllm_importance_sampling_correction": True,
            "vllm_importance_sampling_mode": "token_truncate",
            "vllm_importance_sampling_clip_max": float(settings["rl"]["rollout_is_cap"])}
