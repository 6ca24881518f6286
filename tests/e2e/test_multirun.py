"""`python run.py -m ...` end to end: multiruns over models, seeds and methods, and a job that fails.

The students are tiny random-weight checkpoints of each architecture family the paper uses (Llama for
Llama-3.1-8B, Qwen2 for Qwen2.5-7B, Qwen3 for Qwen3-4B/8B), built here with one small tokenizer, and laid
out as ``<models>/<model.name>/`` so that one override points every job of a model sweep at its own folder:
``'model.path=<models>/${model.name}'`` (the interpolation is resolved in each job). Everything else is the
students' real config (LoRA, bfloat16) shrunk by the overrides of `tests.conftest.FAST`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST, ROOT

pytestmark = pytest.mark.slow

# The students of the users' command (model=qwen,llama) and a Qwen3 student: the three architecture families.
FAMILIES = {"qwen2_5_7b": "qwen2", "llama3_1_8b": "llama", "qwen3_4b": "qwen3", "tiny": "qwen2"}
# The students' critic warm-up (10 steps) must stay below rl.steps: a one-step run has none.
RL_FAST = ["rl.steps=1", "rl.prompts_per_step=2", "rl.group_size=2", "rl.mini_batch_size=4", "rl.micro_batch_size=2",
           "rl.max_new_tokens=8", "rl.val_n=2", "rl.val_interval=1", "rl.critic.warmup_steps=0"]


def build_checkpoints(folder: Path) -> Path:
    """A random-weight model of about 100K parameters per entry of FAMILIES, saved as ``folder/<model.name>``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from cmt.data.corpus import documents
    from cmt.stages.pretrain import tokenizer_texts
    from cmt.tiny import train_tokenizer

    tokenizer = train_tokenizer(tokenizer_texts(documents(200), 200, 0), 400)
    sizes = dict(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=128, max_position_embeddings=512, tie_word_embeddings=True,
                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    classes = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM),
               "qwen3": (Qwen3Config, Qwen3ForCausalLM)}
    for name, family in FAMILIES.items():
        config_class, model_class = classes[family]
        torch.manual_seed(0)
        model = model_class(config_class(**sizes))
        model.save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return build_checkpoints(tmp_path_factory.mktemp("models"))


# Offline, one thread, nothing from the user's environment but PYTHONPATH.
CLI_ENV = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}


def run_cli(workdir: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python run.py -m <overrides>` writing only under ``workdir`` (one thread, offline)."""
    args = ["-m", f"paths.artifacts={workdir}/artifacts", f"paths.results={workdir}/results",
            f"hydra.sweep.dir={workdir}/multirun", *FAST, *overrides]
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=CLI_ENV)


def checkpoint(workdir: Path, model: str, method: str) -> Path:
    return workdir / "artifacts" / "default" / model / "seed0" / method / "model"


def rows(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "results" / "runs.jsonl").read_text().splitlines()]


# --- python run.py -m model=qwen,llama stage=ccrl ---------------------------------------------------------

STUDENTS = ["qwen2_5_7b", "llama3_1_8b", "qwen3_4b"]


@pytest.fixture(scope="module")
def comt_sft(models, tmp_path_factory) -> Path:
    """`-m model=qwen,llama,qwen3_4b stage=pipeline stage.steps=[teach,comt_sft]`: the CoMT-SFT checkpoints."""
    workdir = tmp_path_factory.mktemp("students")
    out = run_cli(workdir, "model=qwen,llama,qwen3_4b", f"model.path={models}/${{model.name}}", "stage=pipeline",
                  "stage.steps=[teach,comt_sft]")
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir


def base_family(folder: Path) -> str:
    """The architecture under a LoRA checkpoint: the model_type of the base folder its adapter names."""
    adapter = json.loads((folder / "adapter_config.json").read_text())
    return json.loads((Path(adapter["base_model_name_or_path"]) / "config.json").read_text())["model_type"]


def test_model_multirun_fine_tunes_each_family_from_its_own_folder(comt_sft, models):
    for student in STUDENTS:
        # LoRA is on for the paper's students: the checkpoint is an adapter over the job's own base folder.
        folder = checkpoint(comt_sft, student, "comt_sft")
        assert (folder / "adapter_model.safetensors").is_file(), student
        assert base_family(folder) == FAMILIES[student], student
        assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == \
            str(models / student)


def test_users_model_multirun_of_ccrl_trains_every_family(comt_sft, models):
    out = run_cli(comt_sft, "model=qwen,llama,qwen3_4b", f"model.path={models}/${{model.name}}", "stage=ccrl",
                  *RL_FAST)
    assert out.returncode == 0, out.stderr[-3000:]
    for student in STUDENTS:
        folder = checkpoint(comt_sft, student, "comt_ccrl")
        assert (folder / "adapter_model.safetensors").is_file(), student
        assert base_family(folder) == FAMILIES[student], student


# --- two seeds x two methods, then the results table ---------------------------------------------------------

def test_seeds_by_methods_multirun_feeds_the_results_table(models, tmp_path):
    # sweep=seeds with its axis cut to two seeds; the method axis pairs each SFT method with its eval.
    out = run_cli(tmp_path, "sweep=seeds", "seed=0,1", f"model.path={models}/tiny", "experiment_name=grid",
                  "stage.compare=[comt_sft],[cot_sft]", "stage.steps=[teach,${stage.compare.0},eval]")
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "multirun").iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    got = rows(tmp_path)
    assert {(r["seed"], r["method"]) for r in got} == {(s, m) for s in (0, 1) for m in ("base", "comt_sft", "cot_sft")}
    assert len(got) == 4 * 2 * 5  # jobs x (base + method) x synthetic splits
    table = subprocess.run([sys.executable, "-m", "cmt.results", "table", "experiment=grid", "--layout", "methods",
                            "--model", "tiny", "--store", str(tmp_path / "results")], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    for method in ("Base", "CoT-SFT", "CoMT-SFT"):  # each over two seeds: mean ± std
        assert any(f"| tiny | {method} | 2 |" in line and "±" in line for line in lines), table.stdout


# --- the paper's experiments, as their tiny twins -----------------------------------------------------------

def test_tiny_paper_main_trains_every_method_and_the_symbolic_ablation_evaluates_them(models, tmp_path):
    out = run_cli(tmp_path, "experiment=tiny_paper_main", f"model.path={models}/tiny", *RL_FAST)
    assert out.returncode == 0, out.stderr[-3000:]
    trained = rows(tmp_path)
    methods = ["base", "cot_sft", "cot_sft_rl", "comt_sft", "comt_ccrl"]
    assert sorted({r["method"] for r in trained}) == sorted(methods) and len(trained) == 5 * 5
    assert {(r["experiment"], r["sweep"]) for r in trained} == {("tiny_paper_main", "tiny_paper_main")}
    assert all(r["train_time_s"] > 0 and r["train_tokens"] > 0 for r in trained if r["method"] != "base")
    # Evaluation only: it finds tiny_paper_main's checkpoints through the shared tag.
    out = run_cli(tmp_path, "experiment=tiny_ablation_symbolic", f"model.path={models}/tiny")
    assert out.returncode == 0, out.stderr[-3000:]
    evaluated = [r for r in rows(tmp_path) if r["experiment"] == "tiny_ablation_symbolic"]
    assert {(r["method"], r["split"]) for r in evaluated} == {
        (m, s) for m in methods for s in ("id", "ood_renamed", "ood_numbers")}


def test_reward_ablation_jobs_train_their_shared_sft_once(models, tmp_path):
    # Two of tiny_ablation_reward's jobs, cut after CoMT-SFT's eval: they differ only in what CCRL would do.
    out = run_cli(tmp_path, "experiment=tiny_ablation_reward", "reward=ccrl,outcome_only", f"model.path={models}/tiny",
                  "stage.steps=[teach,comt_sft,eval]", "stage.compare=[comt_sft]")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("comt_sft: training ") == 1
    assert out.stdout.count(f"comt_sft: reusing the model trained by the job in {tmp_path / 'multirun' / '0'} ") == 1
    folders = sorted((tmp_path / "artifacts").glob("tiny_ablation_reward/*/tiny/seed0/tiny/seed0/comt_sft/model"))
    published = list((tmp_path / "artifacts" / "reuse" / "comt_sft").glob("*/model"))
    assert len(folders) == 2 and len(published) == 1
    assert len({(f / "model.safetensors").stat().st_ino for f in [*folders, *published]}) == 1
    # Both jobs report the one training's time and tokens, and the same model's accuracy.
    trained = [r for r in rows(tmp_path) if r["method"] == "comt_sft"]
    assert sorted({r["experiment"] for r in trained}) == ["tiny_ablation_reward/ccrl_w0.5_plan_execute",
                                                          "tiny_ablation_reward/outcome_only_w0.0_plan_execute"]
    assert len({(r["train_time_s"], r["train_tokens"]) for r in trained}) == 1 and trained[0]["train_time_s"] > 0
    accuracy = {(r["experiment"], r["split"]): r["accuracy"] for r in trained}
    assert all(accuracy[("tiny_ablation_reward/ccrl_w0.5_plan_execute", split)] == value
               for (experiment, split), value in accuracy.items() if experiment.endswith("outcome_only_w0.0"))


def test_jobs_started_together_train_their_shared_sft_once(models, tmp_path):
    # Two jobs of tiny_ablation_reward as SLURM or joblib would start them: side by side, in their own processes.
    common = ["experiment=tiny_ablation_reward", f"model.path={models}/tiny", "stage.steps=[teach,comt_sft]"]
    jobs = [subprocess.Popen([sys.executable, "run.py", f"paths.artifacts={tmp_path}/artifacts",
                              f"paths.results={tmp_path}/results", f"hydra.run.dir={tmp_path}/{reward}", *FAST,
                              *common, f"reward={reward}"], cwd=ROOT, env=CLI_ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for reward in ("ccrl", "outcome_only")]
    outputs = [job.communicate(timeout=600) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], [err[-3000:] for _, err in outputs]
    said = "".join(out for out, _ in outputs)
    assert said.count("comt_sft: training ") == 1 and said.count("comt_sft: reusing the model trained by ") == 1
    folders = list((tmp_path / "artifacts").glob("tiny_ablation_reward/*/tiny/seed0/tiny/seed0/comt_sft/model"))
    assert len(folders) == 2
    assert (folders[0] / "model.safetensors").stat().st_ino == (folders[1] / "model.safetensors").stat().st_ino


# --- a failing job -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def failing_sweep(models, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """Three teach jobs; the second asks for an unknown trace kind, which the config check rejects before
    anything is written."""
    workdir = tmp_path_factory.mktemp("failing")
    out = run_cli(workdir, "stage=teach", "teach.kinds=[comt],[bogus],[cot]", "teach.n=8",
                  f"model.path={models}/tiny")
    return workdir, out


def test_a_failing_job_does_not_stop_the_jobs_after_it(failing_sweep):
    workdir, out = failing_sweep
    data = workdir / "artifacts" / "default" / "data" / "synthetic" / "rule" / "seed0"
    assert (data / "comt.jsonl").is_file() and (data / "cot.jsonl").is_file()
    # Hydra's basic sweeper re-raises the first failure once the batch is done: the sweep exits non-zero.
    assert out.returncode != 0
    assert "teach.kinds=[bogus]" in out.stderr and "unknown kinds" in out.stderr


def test_a_failing_job_is_recorded_in_the_results_folder(failing_sweep):
    workdir, _ = failing_sweep
    failures = [json.loads(line) for line in (workdir / "results" / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == 1
    failure = failures[0]
    assert failure["stage"] == "teach" and failure["error_type"] == "ConfigError"
    assert "unknown kinds" in failure["error"] and "\n" not in failure["error"]
    assert "teach.kinds=[bogus]" in failure["overrides"]
    assert failure["output_dir"].endswith("multirun/1")
    assert {"run_id", "experiment", "sweep", "model", "seed", "git_sha", "config_hash", "created_at"} <= set(failure)


def test_the_failures_command_lists_the_failed_job(failing_sweep):
    workdir, _ = failing_sweep
    out = subprocess.run([sys.executable, "-m", "cmt.results", "failures", "--store", str(workdir / "results")],
                         capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("1 failed job(s)")
    assert "teach.kinds=[bogus]" in lines[1] and "ConfigError" in lines[1] and "unknown kinds" in lines[1]


# --- launcher=joblib (where its plugin is installed) --------------------------------------------------------

def test_joblib_launcher_runs_the_jobs_in_worker_processes(models, tmp_path):
    if importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None:
        pytest.skip("launcher=joblib needs its Hydra plugin: pip install -e '.[joblib]'")
    out = run_cli(tmp_path, "launcher=joblib", "stage=teach", "teach.n=8", "seed=0,1", "tag=seed${seed}",
                  f"model.path={models}/tiny")
    assert out.returncode == 0, out.stderr[-3000:]
    for seed in (0, 1):
        assert (tmp_path / "artifacts" / f"seed{seed}" / "data" / "synthetic" / "rule" / f"seed{seed}"
                / "comt.jsonl").is_file()
    assert "Joblib" in out.stdout + out.stderr
