"""An exclusive lock on a file, for jobs that must not do the same expensive work side by side.

Used where concurrent jobs would each make the same thing: the SFT model store (`cmt.stages.reuse`) and the
conversion of a GGUF file into a model folder (`cmt.gguf`). The lock is an ``flock``, which the system
releases when its process ends, so a killed job never leaves it held.

Why not the ``filelock`` package (checked with filelock 4.3.1, which torch and transformers install): on a
file system that refuses ``flock`` it either raises (``ENOLCK``, NFS without its lock daemon), so the job
fails, or (``ENOSYS``, e.g. Lustre mounted ``noflock``) falls back to a marker file holding the owner's pid
and host, which a job killed on another node (a preempted SLURM job) leaves behind: this host cannot prove
that owner dead, so every later job of the key waits until a timeout. Our callers stay correct without the
lock (they publish by an atomic rename, `cmt.atomic`), so going on unlocked with a warning is the better
fallback; getting it from ``filelock`` (``fallback_to_soft=False``, catching its errors to print the waiting
and the unlocked lines) would take as many lines as this module.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def exclusive(path: str | os.PathLike, waiting: str, unlocked: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created when absent) for the ``with`` block.

    Args:
        path: The lock file; its folder must exist.
        waiting: Printed (with the lock's path) when another process holds the lock and this one waits.
        unlocked: Printed (with the lock's path and the system's reason) when the file system refuses locks
            (some parallel file systems are mounted so); the block then runs unlocked, so callers must stay
            correct without the lock (publish by an atomic rename) and lose only the saved work.
    """
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{waiting} ({path})", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError as error:
            print(f"cannot lock {path} ({error.strerror}): {unlocked}", flush=True)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
