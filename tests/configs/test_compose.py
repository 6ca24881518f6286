"""Every config composes and resolves; the CLI answers like any Hydra app."""

import importlib.util
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, ROOT

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(group, f.stem) for group in GROUPS for f in sorted((CONF / group).glob("*.yaml"))]
# Options that need a Hydra plugin from an extra.
PLUGINS = {("launcher", "joblib"): ("hydra_plugins.hydra_joblib_launcher", "joblib"),
           ("launcher", "slurm"): ("hydra_plugins.hydra_submitit_launcher", "slurm")}


def test_every_group_has_options():
    assert {"model", "teacher", "benchmark", "stage", "trainer", "logger", "paths", "launcher",
            "experiment", "sweep"} <= set(GROUPS)
    assert all(any(g == group for g, _ in OPTIONS) for group in GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_resolves(cfg_factory, group, option):
    if (group, option) in PLUGINS and importlib.util.find_spec(PLUGINS[group, option][0]) is None:
        pytest.skip(f"launcher={option} needs its Hydra plugin: pip install -e '.[{PLUGINS[group, option][1]}]'")
    cfg = cfg_factory([f"{group}={option}"])
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["stage"]["name"]
    assert container["model"]["name"]


def test_the_paper_students_and_short_names_compose(cfg_factory):
    sources = {name: cfg_factory([f"model={name}"]).model.source
               for name in ["llama", "qwen", "llama3_1_8b", "qwen2_5_7b", "qwen3_4b", "qwen3_8b"]}
    assert sources["llama"] == sources["llama3_1_8b"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert sources["qwen"] == sources["qwen2_5_7b"] == "Qwen/Qwen2.5-7B-Instruct"
    assert cfg_factory(["model=qwen"]).model.name == "qwen2_5_7b"


def _run(*args):
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_help_and_cfg_job_work():
    help_text = _run("--help")
    assert help_text.returncode == 0 and "model: " in help_text.stdout and "stage: " in help_text.stdout
    job = _run("--cfg", "job", "stage=cot_sft")
    assert job.returncode == 0 and "name: cot_sft" in job.stdout


def test_unknown_option_fails_with_the_list_of_choices():
    out = _run("model=nope")
    assert out.returncode != 0
    assert "Could not find 'model/nope'" in out.stderr and "tiny" in out.stderr
    assert "Traceback" not in out.stderr
