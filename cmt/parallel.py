"""Leaving a data-parallel fit cleanly (``trainer=ddp``).

With ``ddp_spawn`` every process returns from ``trainer.fit`` on its own schedule: rank 0 still saves the
weights it hands back while the other ranks are already exiting, and each process tears its gloo/NCCL
process group down from an ``atexit`` hook while its peers may be gone. That race can abort a process
after a fit that succeeded ("terminate called without an active exception", SIGABRT), which fails the
job. `ReleaseProcessGroup` closes the group in step instead: every process waits for the others at the
end of the fit, then destroys its group, so nothing distributed is alive when the processes exit.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch.distributed as dist


class ReleaseProcessGroup(pl.Callback):
    """At the end of a multi-process fit: a barrier over all processes, then destroy the process group."""

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not (dist.is_available() and dist.is_initialized()):
            return
        dist.barrier()
        dist.destroy_process_group()
