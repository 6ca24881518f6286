"""``stage=comt_sft`` and ``stage=cot_sft``: fine-tune the student on one kind of teacher trace.

Reads the training set written by ``stage=teach``, trains `cmt.modules.sft.SFTModule` with a Lightning
Trainer (loss on the target tokens only), and saves the model where the next stage looks for it. Training
checkpoints itself and resumes a killed run of the same config (`cmt.checkpointing`, docs/resume.md). With
``reuse_sft=true`` a model that an earlier job trained from the same config, training set and code is linked in
instead of trained again (`cmt.stages.reuse`; the ablations whose jobs differ only after SFT set it).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate

from cmt.artifacts import MissingInputError, checkpoint_dir, require_checkpoint, training_set_path
from cmt.checkpointing import Checkpointer
from cmt.data.prompts import render_prompt
from cmt.data.sft import SFTDataModule, tokenize_pairs
from cmt.logging import log_metrics
from cmt.models import load_model, save_model
from cmt.modules.sft import SFTModule
from cmt.precision import resolve_precision
from cmt.results.store import read_jsonl
from cmt.stages.common import StageContext
from cmt.stages.reuse import ModelStore, StoredModel, restore, reuse_key

# The config nodes that decide what an SFT run computes: a checkpoint made under other values is not resumed.
FINGERPRINT_KEYS = ("seed", "model", "prompt", "sft", "teach", "benchmark", "teacher", "trainer", "stage.parent",
                    "stage.data")


def build_trainer(ctx: StageContext, max_epochs: int, checkpointer: Checkpointer | None = None, **overrides):
    """A Lightning Trainer from ``cfg.trainer`` with the job's logger (and ``checkpointer``, which saves
    through its own checkpoint I/O plugin, beside the callbacks and plugins the trainer config names).
    A precision of ``auto`` (from the config or ``overrides``) becomes what the hardware runs natively."""
    precision = overrides.get("precision", ctx.cfg.trainer.get("precision", "32-true"))
    overrides["precision"] = resolve_precision(precision, ctx.cfg.trainer.get("accelerator", "auto"))
    if checkpointer is not None:
        overrides["callbacks"] = [*instantiate(ctx.cfg.trainer.get("callbacks") or []), checkpointer]
        overrides["plugins"] = [*instantiate(ctx.cfg.trainer.get("plugins") or []), checkpointer.io]
    return instantiate(ctx.cfg.trainer, max_epochs=max_epochs, logger=ctx.logger or False, **overrides)


def run(ctx: StageContext) -> dict[str, float]:
    """Train the stage's ``method`` (``comt_sft``, ``cot_sft``) from its ``parent`` on its ``data`` and save it,
    or with ``reuse_sft`` link in the model an earlier job trained the same way (training and publishing it
    when there is none); returns the final losses and timings."""
    cfg = ctx.cfg
    method_name = str(cfg.stage.method)
    data_path = training_set_path(cfg, str(cfg.stage.data))
    if not data_path.is_file():
        raise MissingInputError(f"no {cfg.stage.data} training set at {data_path}; run `python run.py stage=teach` "
                                "with the same benchmark and teacher first (or stage=pipeline)")
    out = checkpoint_dir(cfg, method_name)
    if not cfg.get("reuse_sft"):
        return train(ctx, method_name, data_path, out)
    store, key = ModelStore(cfg.paths.artifacts, method_name), reuse_key(cfg, FINGERPRINT_KEYS, data_path)
    with store.claim(key, f"{method_name}: waiting for the job that trains the same model"):
        stored = store.find(key)
        if stored is not None:
            return reuse(ctx, method_name, stored, out)
        metrics = train(ctx, method_name, data_path, out)
        store.publish(key, out, {"metrics": metrics, "training": ctx.training[method_name],
                                 "output_dir": str(cfg.paths.output_dir)})
    return metrics


def train(ctx: StageContext, method_name: str, data_path: Path, out: Path) -> dict[str, float]:
    """Train ``method_name`` on the training set at ``data_path`` and save it to ``out``."""
    cfg = ctx.cfg
    records = read_jsonl(data_path)
    if not records:
        raise ValueError(f"{data_path} has no training examples (the teacher's outputs were all filtered: see "
                         f"report.json beside it); fix the teacher or its filters and rerun stage=teach")
    model, tokenizer = load_model(cfg.model, require_checkpoint(cfg, str(cfg.stage.parent)))
    prompts = [render_prompt(r["question"], cfg.prompt.template, tokenizer, cfg.prompt.use_chat_template)
               for r in records]
    examples = tokenize_pairs(tokenizer, prompts, [r["target"] for r in records], cfg.sft.max_length,
                              cfg.prompt.target_prefix)
    random.Random(cfg.seed).shuffle(examples)
    n_val = int(len(examples) * cfg.sft.val_fraction)
    checkpointer = Checkpointer.from_config(cfg, out, FINGERPRINT_KEYS)
    resume = checkpointer.resume_point(cfg.resume)
    data = SFTDataModule(examples[n_val:], examples[:n_val], cfg.sft.batch_size, tokenizer.pad_token_id, cfg.seed,
                         start=(resume.epoch, resume.batches_in_epoch) if resume else (0, 0))
    module = SFTModule(model, instantiate(cfg.sft.optimizer), instantiate(cfg.sft.scheduler),
                       logits_chunk_tokens=cfg.model.get("logits_chunk_tokens"))
    trainer = build_trainer(ctx, cfg.sft.epochs, checkpointer, limit_val_batches=1.0 if n_val else 0)
    print(f"{method_name}: training {type(model).__name__} on {len(examples) - n_val} {cfg.stage.data} traces "
          f"({cfg.sft.epochs} epochs, {trainer.precision} precision)")
    model.train()
    started = time.perf_counter()
    checkpointer.fit(trainer, module, resume, datamodule=data)
    train_time = checkpointer.earlier_time_s + time.perf_counter() - started
    save_model(module.model, tokenizer, out)
    ctx.save_config(out.parent)
    checkpointer.clear()
    tokens = trained_tokens(trainer, module)
    ctx.record_training(method_name, {"train_time_s": train_time, "train_tokens": float(tokens)})
    metrics = {f"{method_name}/{k.replace('/', '_')}": float(v) for k, v in trainer.callback_metrics.items()}
    metrics.update({f"{method_name}/train_time_s": train_time, f"{method_name}/train_tokens": float(tokens)})
    print(f"{method_name}: saved to {out} ({train_time:.0f} s, {tokens} target tokens)")
    return metrics


def reuse(ctx: StageContext, method_name: str, stored: StoredModel, out: Path) -> dict[str, float]:
    """Link the stored model into this job's folder ``out`` and report its training job's metrics, time and
    tokens as this job's (they are what the model cost)."""
    restore(stored, out)
    ctx.save_config(out.parent)
    ctx.record_training(method_name, stored.training["training"])
    metrics = stored.training["metrics"]
    log_metrics(ctx.logger, metrics)
    print(f"{method_name}: reusing the model trained by the job in {stored.training['output_dir']} (same config, "
          f"training set and code; reuse_sft=true), linked into {out}")
    return metrics


def trained_tokens(trainer: pl.Trainer, module: SFTModule) -> int:
    """Target tokens the fit trained on, over all processes.

    Under ``ddp_spawn`` (trainer=ddp) the module in the job's process never trains: the processes that did
    hand back its weights and the logged metrics, so then the count is read from those (a float32 there, exact
    up to 2**24 tokens).
    """
    logged = trainer.callback_metrics.get("train/target_tokens")
    if module.target_tokens or logged is None:
        return module.target_tokens
    return round(float(logged))
