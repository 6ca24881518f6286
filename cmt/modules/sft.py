"""The SFT LightningModule: next-token cross-entropy on the unmasked (target) tokens of each batch.

One module serves CoMT-SFT, CoT-SFT and the tiny model's pretraining: the methods differ only in the data
and its loss mask (see `cmt.data.sft`). Optimizer and scheduler arrive as partials from config
(``_partial_: true``), in the style of lightning-hydra-template.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch

from cmt.data.sft import IGNORE_INDEX
from cmt.lm_head import chosen_logprobs, split_head


class SFTModule(pl.LightningModule):
    """Fine-tune a causal LM on masked targets.

    Args:
        model: A Hugging Face causal LM (optionally PEFT-wrapped).
        optimizer: ``params -> Optimizer`` (a config partial such as ``torch.optim.AdamW``).
        scheduler: ``(optimizer, num_training_steps) -> LRScheduler`` or None; stepped every batch.
        logits_chunk_tokens: Score the target tokens through the LM head this many at a time (`cmt.lm_head`:
            a real vocabulary's logits of the whole batch never exist at once); None: the model's own loss.

    Raises:
        UnsupportedHeadError: ``logits_chunk_tokens`` with a model whose logits are not a plain projection.
    """

    def __init__(self, model: torch.nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, logits_chunk_tokens: int | None = None):
        super().__init__()
        self.model = model
        self.logits_chunk_tokens = logits_chunk_tokens
        if logits_chunk_tokens is not None:
            split_head(model)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.target_tokens = 0
        self._started = 0.0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the target tokens of ``batch``."""
        if self.logits_chunk_tokens is None:
            return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              labels=batch["labels"]).loss
        decoder, head = split_head(self.model)
        hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        # Position t predicts token t + 1.
        targets = batch["labels"][:, 1:]
        scored = targets != IGNORE_INDEX
        logprobs, _ = chosen_logprobs(head, hidden[:, :-1][scored], targets[scored],
                                      chunk_tokens=self.logits_chunk_tokens)
        return -logprobs.mean()

    def on_train_start(self) -> None:
        self._started = time.perf_counter()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch)
        tokens = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        if self.trainer.world_size > 1:
            tokens = self.trainer.strategy.reduce(tokens, reduce_op="sum")
        self.target_tokens += int(tokens)
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        self.log("train/target_tokens", float(self.target_tokens))
        self.log("timing/target_tokens_per_s", self.target_tokens / elapsed)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self(batch), prog_bar=True, batch_size=batch["input_ids"].shape[0])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the target-token count in a resumable checkpoint (Lightning saves weights and optimizers)."""
        checkpoint["sft"] = {"target_tokens": self.target_tokens}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.target_tokens = int(checkpoint["sft"]["target_tokens"])

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer,
                                           num_training_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
