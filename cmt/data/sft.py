"""Supervised fine-tuning data: (prompt, target) pairs tokenized with a loss mask, in length-grouped batches.

The loss mask is what makes CoMT-SFT and CoT-SFT one module: both train on ``prompt + target`` with the
loss on the target tokens only; the methods differ in the targets the teacher wrote.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One tokenized training sequence; ``labels`` is ``IGNORE_INDEX`` where no loss is taken."""

    input_ids: list[int]
    labels: list[int]


def tokenize_pairs(tokenizer, prompts: Sequence[str], targets: Sequence[str], max_length: int,
                   target_prefix: str = " ") -> list[Example]:
    """Tokenize prompt/target pairs; the target gets ``target_prefix`` in front and EOS at the end.

    Sequences longer than ``max_length`` are cut from the end (their EOS is lost, so the model does not
    learn to stop there); pick ``max_length`` above the longest pair to avoid that.
    """
    prompt_ids = tokenizer(list(prompts), add_special_tokens=True).input_ids
    target_ids = tokenizer([target_prefix + t for t in targets], add_special_tokens=False).input_ids
    examples = []
    for p, t in zip(prompt_ids, target_ids, strict=True):
        t = t + [tokenizer.eos_token_id]
        ids = (p + t)[:max_length]
        labels = ([IGNORE_INDEX] * len(p) + t)[:max_length]
        examples.append(Example(ids, labels))
    return examples


def tokenize_documents(tokenizer, documents: Sequence[str], max_length: int) -> list[Example]:
    """Tokenize plain documents for language modelling: the loss is on every token, EOS appended."""
    ids = tokenizer(list(documents), add_special_tokens=True).input_ids
    return [Example((x + [tokenizer.eos_token_id])[:max_length], (x + [tokenizer.eos_token_id])[:max_length])
            for x in ids]


class LengthGroupedSampler(Sampler[list[int]]):
    """Batches of similar length (less padding), in a random order that is fixed by seed and epoch.

    Examples are shuffled, cut into windows of ``window`` batches, sorted by length within a window and
    batched; the batch order is then shuffled again so that lengths do not trend over an epoch. A resumed
    run calls `resume` so that its first pass skips the batches the killed run already trained on.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, window: int = 64):
        self.lengths, self.batch_size, self.seed, self.window = list(lengths), batch_size, seed, window
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        """Make the next pass the rest of ``epoch`` after its first ``batches_done`` batches (the next epoch
        when it was finished). The length stays the whole epoch's, as Lightning's restored counters expect."""
        self.epoch, self.skip = (epoch + 1, 0) if batches_done >= len(self) else (epoch, batches_done)

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start:start + span], key=self.lengths.__getitem__)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        self.epoch += 1
        skip, self.skip = self.skip, 0
        return iter(batches[skip:])

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ``input_ids``, ``attention_mask`` and ``labels`` tensors of shape (B, T)."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class SFTDataModule(pl.LightningDataModule):
    """Train (and optional validation) loaders over already tokenized examples."""

    def __init__(self, train: Sequence[Example], val: Sequence[Example], batch_size: int, pad_id: int,
                 seed: int, start: tuple[int, int] = (0, 0)):
        super().__init__()
        self.train, self.val = list(train), list(val)
        self.batch_size, self.pad_id, self.seed = batch_size, pad_id, seed
        # (epoch, batches of it already trained on) where a resumed run starts.
        self.start = start

    def _collate(self, batch: Sequence[Example]) -> dict[str, torch.Tensor]:
        return collate(batch, self.pad_id)

    def train_dataloader(self) -> DataLoader:
        # Imported here: cmt.data.distributed builds on this module.
        from cmt.data.distributed import length_grouped_sampler

        sampler = length_grouped_sampler([len(e.input_ids) for e in self.train], self.batch_size, self.seed,
                                         self.trainer)
        sampler.resume(*self.start)
        return DataLoader(self.train, batch_sampler=sampler, collate_fn=self._collate)

    def val_dataloader(self) -> DataLoader:
        # An empty validation set gives an empty loader, which Lightning skips.
        return DataLoader(self.val, batch_size=self.batch_size, collate_fn=self._collate)
