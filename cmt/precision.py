"""``precision: auto``: the fastest training precision the job's hardware runs natively.

Lightning has no automatic precision, and the right one depends on the machine: bf16 autocast is what GPUs
from Ampere on are built for, and it trains the bundled tiny model faster on a CPU with bf16 dot-product
instructions (AVX512-BF16 or AMX; measured in perf/README.md, "bf16 and eager attention on the tiny model"),
but emulating bf16 on a CPU without them can be slower than float32. So ``auto`` becomes ``bf16-mixed`` where
bf16 is native and ``32-true`` elsewhere; every other value is passed to Lightning unchanged. Weights stay
float32 under ``bf16-mixed`` (only the matrix products run in bf16), so saved models and their accuracy
differ from a ``32-true`` run by rounding only."""

from __future__ import annotations

import torch

AUTO = "auto"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX tiles).

    torch exposes the checks privately (``torch.cpu._is_*_supported``); if a future torch drops them the
    answer is False, which only costs speed.
    """
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check is not None and bool(check()) for check in checks)


def uses_gpu(accelerator: str) -> bool:
    """Whether a Trainer with this ``accelerator`` setting trains on a CUDA GPU."""
    accelerator = str(accelerator)
    return accelerator in ("gpu", "cuda") or (accelerator == AUTO and torch.cuda.is_available())


def device_for(accelerator: str) -> str:
    """The torch device of work done outside a Trainer (the eval stage) under this ``accelerator`` setting."""
    return "cuda" if uses_gpu(accelerator) else "cpu"


def resolve_precision(precision: str | int, accelerator: str = AUTO) -> str | int:
    """``precision`` for Lightning's Trainer, with ``auto`` replaced by what the hardware runs natively."""
    if str(precision) != AUTO:
        return precision
    if uses_gpu(accelerator):
        # Without emulation: torch counts bf16 as supported on GPUs that only emulate it (T4, V100), where
        # it is slower than float32.
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    else:
        native = cpu_has_native_bf16()
    return "bf16-mixed" if native else "32-true"
