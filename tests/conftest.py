"""Shared fixtures: the real Hydra config, composed and shrunk to run in seconds on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data" / "benchmarks"

# Small enough for a test, large enough to exercise every code path.
FAST = ["teach.n=64", "benchmark.eval_n=8", "sft.epochs=1", "sft.batch_size=16", "eval.max_new_tokens=24",
        "rl.steps=2", "rl.val_n=4", "rl.val_interval=2", "rl.max_new_tokens=24", "logger=none"]


def compose_config(overrides: list[str], tmp_path: Path) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` as `run.py` would, writing only under ``tmp_path``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "job")
        cfg.paths.artifacts = str(tmp_path / "artifacts")
        cfg.paths.results = str(tmp_path / "results")
        del cfg.hydra
    return cfg


@pytest.fixture
def cfg_factory(tmp_path):
    """``make(overrides) -> cfg`` composed from the real config, isolated in ``tmp_path``."""
    def make(overrides: list[str] | None = None) -> DictConfig:
        return compose_config(list(overrides or []), tmp_path)
    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def tiny():
    """The bundled tiny model and tokenizer (CPU, float32)."""
    from cmt.models import load_model

    return load_model({"source": "bundled:tiny", "path": None, "dtype": "float32", "lora": {"enabled": False}})


@pytest.fixture
def echo_server():
    """``start(*args, env=None) -> base_url``: OpenAI-compatible echo servers on 127.0.0.1 (``python -m
    tools.openai_server --echo``, with the given failure-injection arguments), stopped after the test."""
    from tools.openai_server import launch

    processes = []

    def start(*args, env=None):
        process, base_url = launch(["--echo", *args], env=env)
        processes.append(process)
        return base_url

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Tests never reach a hub or W&B's servers."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", os.environ.get("WANDB_MODE", "offline"))


def default_sigint() -> None:
    """``preexec_fn`` for children that a test interrupts with SIGINT: a shell that starts pytest in the
    background (``cmd &``) makes it ignore SIGINT, and children inherit that; restore Python's default."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
