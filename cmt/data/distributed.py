"""Length-grouped SFT batches sharded over data-parallel processes (``trainer=ddp``).

`cmt.data.sft.LengthGroupedSampler` yields whole batches (it is a batch sampler), and Lightning cannot shard
a batch sampler that is not a ``torch.utils.data.BatchSampler``: with its default
``use_distributed_sampler=True`` a multi-process fit stops with "Lightning can't inject a (distributed)
sampler into your batch sampler", and with ``use_distributed_sampler=False`` every process trains on the
same batches. `DistributedLengthGroupedSampler` shards the batches itself:

- it builds the *global* batches of ``batch_size * world_size`` examples exactly as `LengthGroupedSampler`
  does for one process with that batch size (same seed, same epoch, same length grouping);
- process ``rank`` takes examples ``rank, rank + world_size, ...`` of each global batch (interleaved, so
  every process gets a share of similar length), and every process yields the same number of batches;
- a last global batch with fewer examples than processes is padded by repeating its examples.

So ``trainer=ddp trainer.devices=2 sft.batch_size=8`` takes the same optimizer steps on the same examples
as one process with ``sft.batch_size=16``. The gradients agree exactly when the shards of a step hold equal
numbers of target tokens; otherwise DDP averages per-process token means (the usual DDP behaviour).

    sampler = length_grouped_sampler(lengths, batch_size, seed, trainer)   # in a LightningDataModule
    DataLoader(dataset, batch_sampler=sampler, collate_fn=...)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler

from cmt.data.sft import LengthGroupedSampler


class DistributedLengthGroupedSampler(Sampler[list[int]]):
    """One process's share of the length-grouped global batches.

    Args:
        lengths: Sequence length of every example (the whole dataset, the same on every process).
        batch_size: Examples per process and step (the global batch is ``batch_size * num_replicas``).
        seed: Seeds the order; every process must pass the same seed.
        num_replicas: Number of data-parallel processes (the trainer's ``world_size``).
        rank: This process's index in ``[0, num_replicas)`` (the trainer's ``global_rank``).
        window: Global batches per length-sorting window (as in `LengthGroupedSampler`).

    Raises:
        ValueError: A batch size, process count or rank out of range.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, num_replicas: int, rank: int,
                 window: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be at least 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.batch_size, self.num_replicas, self.rank = batch_size, num_replicas, rank
        self.global_batches = LengthGroupedSampler(lengths, batch_size * num_replicas, seed, window)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch; every process then draws the same global order."""
        self.global_batches.set_epoch(epoch)

    def resume(self, epoch: int, batches_done: int) -> None:
        """Skip the first ``batches_done`` batches of ``epoch`` (see `LengthGroupedSampler.resume`)."""
        self.global_batches.resume(epoch, batches_done)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches:
            if len(batch) < self.num_replicas:
                batch = (batch * self.num_replicas)[:self.num_replicas]
            yield batch[self.rank::self.num_replicas]

    def __len__(self) -> int:
        return len(self.global_batches)


def length_grouped_sampler(lengths: Sequence[int], batch_size: int, seed: int,
                           trainer: Any = None) -> LengthGroupedSampler | DistributedLengthGroupedSampler:
    """The SFT batch sampler for ``trainer``: sharded when it runs several processes, else the plain one.

    Args:
        lengths: Sequence length of every training example.
        batch_size: Examples per process and step.
        seed: Seeds the order (shared by all processes).
        trainer: The Lightning Trainer the data module is attached to (None outside a fit: one process).
    """
    world_size = int(getattr(trainer, "world_size", 1) or 1)
    if world_size == 1:
        return LengthGroupedSampler(lengths, batch_size, seed)
    return DistributedLengthGroupedSampler(lengths, batch_size, seed, world_size, int(trainer.global_rank))
