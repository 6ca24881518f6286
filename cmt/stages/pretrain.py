"""``stage=pretrain``: build the bundled tiny model from nothing but a seed.

Corpus (`cmt.data.corpus`) -> byte-level BPE tokenizer with single-digit tokens (`cmt.tiny`) -> a
randomly initialised Qwen2-architecture model -> language-model training with the SFT module (loss on
every token) -> a save_pretrained folder. ``stage.output_dir=cmt/assets/tiny`` refreshes the bundled model.

The tokenizer is trained on the corpus *and* on the language of the synthetic questions and of both
trace kinds, as a real LLM's tokenizer covers all of English; the model itself only ever sees the
corpus, so the solution format is learnt in fine-tuning, as in the paper's setting.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from transformers import (
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2ForCausalLM,
)

from cmt.artifacts import MissingInputError
from cmt.data import synthetic
from cmt.data.corpus import documents
from cmt.data.sft import SFTDataModule, tokenize_documents
from cmt.models import load_tokenizer, save_model
from cmt.modules.sft import SFTModule
from cmt.stages.common import StageContext
from cmt.stages.sft import build_trainer
from cmt.teachers import KINDS
from cmt.teachers.rule import RuleTeacher
from cmt.tiny import architecture, train_tokenizer


def tokenizer_texts(corpus: list[str], n: int, seed: int) -> list[str]:
    """Corpus documents plus questions and traces of every synthetic split: the tokenizer's training text."""
    texts = corpus[:n]
    teacher = RuleTeacher()
    for split in synthetic.SPLITS:
        problems = synthetic.generate(split, 200, seed=seed + 1)
        texts += [p.question for p in problems]
        for kind in KINDS:
            texts += [t for t in teacher.write(problems, kind) if t]
    return texts


def initial_model(ctx: StageContext, corpus: list[str]) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A new model and tokenizer (trained on ``corpus``), or the saved ones ``stage.init_from`` names, whose
    pretraining then continues on this run's corpus."""
    cfg, stage = ctx.cfg, ctx.cfg.stage
    if stage.init_from:
        folder = Path(stage.init_from)
        if not (folder / "config.json").is_file():
            raise MissingInputError(f"stage.init_from={folder} is not a saved model folder; point it at the "
                                    "stage.output_dir of an earlier `python run.py stage=pretrain`")
        model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), load_tokenizer(str(folder))
    else:
        tokenizer = train_tokenizer(tokenizer_texts(corpus, stage.tokenizer_documents, cfg.seed), stage.vocab_size)
        torch.manual_seed(cfg.seed)
        model = Qwen2ForCausalLM(architecture(tokenizer, **stage.architecture))
    model.set_attn_implementation(str(stage.attn_implementation))
    return model, tokenizer


def run(ctx: StageContext) -> dict[str, float]:
    """Pretrain and save the tiny model; returns its final training loss and size."""
    cfg, stage = ctx.cfg, ctx.cfg.stage
    corpus = documents(stage.documents, seed=cfg.seed, drill_fraction=stage.drill_fraction)
    model, tokenizer = initial_model(ctx, corpus)
    n_params = sum(p.numel() for p in model.parameters())
    examples = tokenize_documents(tokenizer, corpus, stage.max_length)
    random.Random(cfg.seed).shuffle(examples)
    print(f"pretrain: {n_params / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}, {len(examples)} documents, "
          f"{sum(len(e.input_ids) for e in examples)} tokens")
    data = SFTDataModule(examples, [], stage.batch_size, tokenizer.pad_token_id, cfg.seed)
    module = SFTModule(model, instantiate(stage.optimizer), instantiate(stage.scheduler))
    model.train()
    started = time.perf_counter()
    build_trainer(ctx, stage.epochs, limit_val_batches=0, precision=stage.precision).fit(module, datamodule=data)
    elapsed = time.perf_counter() - started
    save_model(module.model, tokenizer, Path(stage.output_dir))
    loss = float(module.trainer.callback_metrics.get("train/loss", float("nan")))
    print(f"pretrain: saved to {stage.output_dir} (loss {loss:.3f}, {elapsed:.0f} s)")
    return {"pretrain/loss": loss, "pretrain/parameters": float(n_params), "pretrain/time_s": elapsed}
