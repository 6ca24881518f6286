"""``precision: auto`` picks bf16 only where the hardware multiplies it natively (cmt.precision)."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
import torch
from lightning_fabric.connector import _PRECISION_INPUT_STR

from cmt.precision import cpu_has_native_bf16, device_for, resolve_precision

CPUINFO = Path("/proc/cpuinfo")


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed", 32, "64"])
def test_explicit_precisions_pass_through(precision):
    assert resolve_precision(precision, "cpu") == precision


@pytest.mark.parametrize("accelerator", ["cpu", "auto", "gpu"])
def test_auto_becomes_a_precision_lightning_accepts(accelerator):
    assert resolve_precision("auto", accelerator) in get_args(_PRECISION_INPUT_STR)


@pytest.mark.skipif(not CPUINFO.is_file(), reason="reads the CPU's flags from /proc/cpuinfo (Linux)")
def test_cpu_check_agrees_with_the_cpu_flags():
    flags = next((line.split(":", 1)[1].split() for line in CPUINFO.read_text().splitlines()
                  if line.startswith("flags")), [])
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert cpu_has_native_bf16() == native
    assert resolve_precision("auto", "cpu") == ("bf16-mixed" if native else "32-true")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
def test_a_gpu_trainer_without_a_gpu_stays_in_float32():
    assert resolve_precision("auto", "gpu") == "32-true"


@pytest.mark.parametrize("accelerator", ["cpu", "auto", "gpu"])
def test_eval_outside_a_trainer_runs_where_a_trainer_would(accelerator):
    expected = "cuda" if accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available()) else "cpu"
    assert device_for(accelerator) == expected
