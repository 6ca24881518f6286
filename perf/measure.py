"""Timing and memory: step clocks, a forward hook that counts non-padding tokens, peak RSS and GPU memory.

Throughput is read over a window of steps after start-up: the tokens of every forward pass that starts
after step ``skip`` ends and before the last step ends, over that time. Both sides are measured by the same
hook on the same model object, so the count does not depend on how a framework reports its own tokens.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field


def sync(device: str) -> None:
    """Wait for the GPU (timestamps on a GPU are meaningless without it); nothing on a CPU."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _status_mb(field: str, pid: int | str = "self") -> float | None:
    """A ``kB`` field of /proc/PID/status in MiB (None where /proc is missing or the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (VmHWM; ru_maxrss where /proc is missing)."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float | None:
    """This process's resident set size now, in MiB (None where /proc is missing)."""
    return _status_mb("VmRSS")


def gpu_peak_mb(device: str) -> float | None:
    """Peak GPU memory allocated by torch in MiB, None on a CPU."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20


class TreeRss:
    """The peak of the summed resident memory of this process and all its descendants, sampled every
    ``interval`` seconds on a background thread (a vLLM engine's worker process holds the weights and KV
    cache outside the worker's own VmHWM)."""

    def __init__(self, interval: float = 0.25):
        self.interval, self.peak_mb = interval, 0.0
        self._stop = None

    def sample(self) -> float:
        """The summed RSS of the tree now, in MiB (processes that exit while read are skipped)."""
        import psutil

        me = psutil.Process()
        total = 0
        for process in [me, *me.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def start(self) -> TreeRss:
        import threading

        self._stop = threading.Event()

        def loop():
            while not self._stop.is_set():
                self.peak_mb = max(self.peak_mb, self.sample())
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> float:
        """Stop sampling; the peak in MiB."""
        self._stop.set()
        self._thread.join()
        return self.peak_mb


@dataclass
class TokenCounter:
    """Counts the non-padding input tokens of every forward pass of a model, with the time it started.

    Tokens are ``attention_mask.sum()`` when a mask is passed, else every input id (padding-free batches).
    """

    events: list[tuple[float, int]] = field(default_factory=list)
    enabled: bool = True

    def attach(self, model) -> TokenCounter:
        def hook(_module, args, kwargs):
            if not self.enabled:
                return
            mask = kwargs.get("attention_mask")
            ids = kwargs.get("input_ids", args[0] if args else None)
            tokens = int(mask.sum()) if mask is not None and mask.dim() == 2 else int(ids.numel())
            self.events.append((time.perf_counter(), tokens))

        self.handle = model.register_forward_pre_hook(hook, with_kwargs=True)
        return self

    def tokens_between(self, start: float, end: float) -> int:
        return sum(n for t, n in self.events if start <= t < end)


def window(step_ends: list[float], skip: int) -> tuple[float, float, int]:
    """(start, end, steps) of the timed window: from the end of step ``skip`` (at least the first) to the last.

    Raises:
        ValueError: When no step is left to time after the skipped ones.
    """
    skip = max(int(skip), 1)
    if len(step_ends) <= skip:
        raise ValueError(f"{len(step_ends)} steps ran, need more than {skip} to time any after start-up; "
                         "raise the number of steps or lower skip_steps")
    return step_ends[skip - 1], step_ends[-1], len(step_ends) - skip


def step_times(step_ends: list[float], skip: int) -> list[float]:
    """Durations of the steps in the timed window (see :func:`window`)."""
    skip = max(int(skip), 1)
    window(step_ends, skip)
    return [b - a for a, b in zip(step_ends[skip - 1:-1], step_ends[skip:], strict=True)]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
