"""SFT throughput: our SFTModule under a Lightning Trainer vs TRL's SFTTrainer, one epoch of the same pairs.

Both sides train the same weights on the same (prompt, CoT target) pairs with the loss on the target tokens
only, at the same maximum length and batch size, with the same optimizer (torch AdamW, betas 0.9/0.95, no
weight decay), cosine schedule with warm-up and gradient clipping. Throughput counts non-padding input
tokens of every forward pass in the timed window (perf.measure); the wall time includes tokenizing.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from perf import data, models
from perf.flops import flops_per_token, mfu, peak_flops
from perf.measure import TokenCounter, current_rss_mb, sync, window


def _result(settings: dict[str, Any], model, counter: TokenCounter, step_ends: list[float], skip: int,
            wall: float, total_tokens: int, examples: int) -> dict[str, Any]:
    start, end, steps = window(step_ends, skip)
    tokens = counter.tokens_between(start, end)
    rate = tokens / (end - start)
    shape = models.describe(model)
    context = total_tokens / max(examples, 1) / 2  # mean causal context of a training token
    per_token = flops_per_token(shape["matmul_params"], shape["layers"], shape["hidden"], context, backward=True)
    peak = peak_flops(settings["device"], settings["dtype"], settings.get("peak_flops"))
    return {"tokens_per_s": rate, "timed_steps": steps, "timed_tokens": tokens, "steps": len(step_ends),
            "wall_s": wall, "epoch_tokens": total_tokens, "examples": examples,
            "mfu": mfu(per_token * rate, 1.0, peak), "params": shape["params"]}


def ours(settings: dict[str, Any], workdir: str, kind: str = "cot", section: str = "sft") -> dict[str, Any]:
    """One epoch of `cmt.modules.sft.SFTModule` on ``kind`` traces, trained as `cmt.stages.sft` does."""
    import pytorch_lightning as pl
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from cmt.data.sft import SFTDataModule, tokenize_pairs
    from cmt.modules.sft import SFTModule

    s = {**settings["sft"], **settings[section]}
    device = settings["device"]
    model, tokenizer = models.load(f"{workdir}/model", settings["dtype"], device)
    loaded_rss = current_rss_mb()
    started = time.perf_counter()
    prompts, targets = data.sft_pairs(tokenizer, int(s["examples"]), kind, int(settings["seed"]))
    examples = tokenize_pairs(tokenizer, prompts, targets, int(s["max_length"]), data.TARGET_PREFIX)
    datamodule = SFTDataModule(examples, [], int(s["batch_size"]), tokenizer.pad_token_id, int(settings["seed"]))
    module = SFTModule(model, partial(torch.optim.AdamW, lr=float(s["lr"]), weight_decay=0.0, betas=(0.9, 0.95)),
                       partial(get_cosine_schedule_with_warmup, num_warmup_steps=int(s["warmup_lr_steps"])))
    step_ends: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_end(self, *args, **kwargs):
            sync(device)
            step_ends.append(time.perf_counter())

    counter = TokenCounter().attach(model)
    models.checkpointing(model, bool(settings.get("activation_checkpointing")))
    precision = {"float32": "32-true", "bfloat16": "bf16-true", "float16": "16-true"}[settings["dtype"]]
    trainer = pl.Trainer(accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1, precision=precision,
                         max_epochs=1, logger=False, enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0,
                         gradient_clip_val=float(s["max_grad_norm"]), log_every_n_steps=10, callbacks=[Clock()])
    model.train()
    fit_started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    sync(device)
    wall = time.perf_counter() - started
    fit_s = time.perf_counter() - fit_started
    total = sum(len(e.input_ids) for e in examples)
    result = _result(settings, model, counter, step_ends, int(s["skip_steps"]), wall, total, len(examples))
    result["rss_after_load_mb"] = loaded_rss
    result.update({"target_tokens_per_example": sum(sum(1 for x in e.labels if x != -100) for e in examples)
                   / len(examples), "tokens_per_example": total / len(examples),
                   "fit_s": fit_s, "last_loss": float(trainer.callback_metrics.get("train/loss", float("nan")))})
    return result


def trl(settings: dict[str, Any], workdir: str) -> dict[str, Any]:
    """One epoch of TRL's SFTTrainer on the same pairs (prompt-completion data: loss on the completion)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    s = settings["sft"]
    device = settings["device"]
    model, tokenizer = models.load(f"{workdir}/model", settings["dtype"], device)
    loaded_rss = current_rss_mb()
    started = time.perf_counter()
    prompts, targets = data.sft_pairs(tokenizer, int(s["examples"]), "cot", int(settings["seed"]))
    dataset = Dataset.from_dict({"prompt": prompts, "completion": [data.TARGET_PREFIX + t for t in targets]})
    step_ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            step_ends.append(time.perf_counter())

    args = SFTConfig(
        output_dir=f"{workdir}/trl_sft", per_device_train_batch_size=int(s["batch_size"]), num_train_epochs=1,
        learning_rate=float(s["lr"]), lr_scheduler_type="cosine", warmup_steps=int(s["warmup_lr_steps"]),
        weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.95, optim="adamw_torch", max_grad_norm=float(s["max_grad_norm"]),
        max_length=int(s["max_length"]), completion_only_loss=True, packing=False, logging_steps=10,
        save_strategy="no", report_to="none", use_cpu=not device.startswith("cuda"),
        bf16=settings["dtype"] == "bfloat16", fp16=settings["dtype"] == "float16", dataloader_num_workers=0,
        seed=int(settings["seed"]), disable_tqdm=True,
        **models.trainer_checkpointing(SFTConfig, bool(settings.get("activation_checkpointing"))))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[Clock()])
    counter = TokenCounter().attach(model)
    fit_started = time.perf_counter()
    output = trainer.train()
    sync(device)
    wall = time.perf_counter() - started
    fit_s = time.perf_counter() - fit_started
    tokenized = trainer.train_dataset
    total = sum(len(ids) for ids in tokenized["input_ids"])
    result = _result(settings, model, counter, step_ends, int(s["skip_steps"]), wall, total, len(tokenized))
    result["rss_after_load_mb"] = loaded_rss
    result.update({"tokens_per_example": total / len(tokenized), "fit_s": fit_s,
                   "mean_loss": float(output.training_loss)})
    return result
