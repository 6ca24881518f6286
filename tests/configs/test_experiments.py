"""The experiment and sweep files: headers, tiny twins, and the jobs their multiruns expand to.

`test_compose.py` composes every option once; these tests read the files as a user would run them: each
`-m` sweep is expanded into its jobs the way Hydra's basic sweeper does, and every job is composed and
resolved, so a typo in a swept value (an unknown teacher, a misspelt rl preset) fails here, not on a cluster.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from cmt.artifacts import checkpoint_dir, training_set_path
from cmt.checkpointing import fingerprint
from cmt.stages.sft import FINGERPRINT_KEYS
from tests.conftest import CONF, ROOT

EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))
FILES = [("experiment", name) for name in EXPERIMENTS] + [("sweep", name) for name in SWEEPS]
# The paper's experiments, each with a tiny_ twin on the embedded default; smollm2_ ones are already sized for a
# CPU (a real model's twin of a paper experiment) and need none.
FULL = [name for name in EXPERIMENTS if not name.startswith(("tiny_", "smollm2_"))]
STUDENTS = ["llama3_1_8b", "qwen2_5_7b", "qwen3_4b", "qwen3_8b"]


def _path(group: str, name: str) -> Path:
    return ROOT / ("experiments" if group == "experiment" else "sweeps") / f"{name}.yaml"


def _compose(overrides: list[str]) -> DictConfig:
    """The config of `python run.py -m <overrides>`, the hydra node included (nothing is written)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def _jobs(overrides: list[str]) -> list[list[str]]:
    """The override lists of the jobs `python run.py -m <overrides>` launches (Hydra's basic sweeper)."""
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    params = _compose(fixed).hydra.sweeper.params or {}
    parsed = parser.parse_overrides([f"{key}={value}" for key, value in params.items()] + overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _job_config(job: list[str]) -> DictConfig:
    """A job's task config, resolved (as the job sees it), with the hydra node dropped (read-only)."""
    return _resolved(tuple(job))


@functools.cache
def _resolved(job: tuple[str, ...]) -> DictConfig:
    cfg = _compose(list(job))
    with open_dict(cfg):
        del cfg.hydra
        # ${hydra:runtime.output_dir} needs a running job: point the job folder at a fixed name.
        cfg.paths.output_dir = "job"
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.set_readonly(resolved, True)
    return resolved


def _header(group: str, name: str) -> list[str]:
    """The file's leading comment lines, without the '#'."""
    lines = []
    for line in _path(group, name).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return lines


def test_every_experiment_has_a_tiny_twin():
    missing = [f"tiny_{name}" for name in FULL if f"tiny_{name}" not in EXPERIMENTS]
    assert not missing, f"no embedded-default twin for {missing}"
    assert {"paper_main", "ablation_teacher", "ablation_rl", "ablation_reward", "ablation_symbolic",
            "efficiency"} <= set(FULL)


@pytest.mark.parametrize(("group", "name"), FILES, ids=[f"{g}={n}" for g, n in FILES])
def test_file_is_global_and_its_header_has_the_exact_command(group, name):
    header = _header(group, name)
    assert header[0] == "@package _global_"
    commands = [line for line in header if line.startswith("python run.py") and f"{group}={name}" in line.split()]
    assert commands, f"{name}.yaml: no header line `python run.py ... {group}={name}`"
    if _compose([f"{group}={name}"]).hydra.sweeper.params:
        assert any(" -m " in f" {c} " for c in commands), f"{name}.yaml sweeps but its header command has no -m"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_values_reach_the_config(name):
    cfg = _job_config(_jobs([f"experiment={name}"])[0])
    assert cfg.experiment_name.split("/")[0] == name
    assert cfg.tag != "default", "an experiment keeps its artifacts apart from plain runs"


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if _path("experiment", n).read_text().count("params:")])
def test_multirun_jobs_compose_resolve_and_never_share_an_artifact_folder(name):
    jobs = _jobs([f"experiment={name}"])
    configs = [_job_config(job) for job in jobs]
    training = {str(checkpoint_dir(cfg, "comt_sft")) for cfg in configs}
    assert len(training) == len(jobs), f"jobs of {name} would write the same checkpoints"
    data = {str(training_set_path(cfg, "comt")) for cfg in configs}
    if OmegaConf.select(configs[0], "stage.steps") is not None and "teach" in configs[0].stage.steps:
        assert len(data) == len(jobs), f"jobs of {name} would write the same training sets"


@pytest.mark.parametrize(("name", "key", "values"), [
    ("paper_main", "model.name", STUDENTS),
    ("efficiency", "model.name", STUDENTS),
    ("ablation_symbolic", "model.name", STUDENTS),
    ("ablation_teacher", "teacher.name", ["llama3_1_70b", "llama3_3_70b", "qwen2_5_72b"]),
    ("ablation_rl", "rl.name", ["ppo", "grpo", "dr_grpo", "dapo"]),
    ("ablation_reward", "reward.name", ["ccrl", "ccrl_brier", "ccrl_log", "ccrl_step", "outcome_only"]),
])
def test_each_sweep_covers_its_axis_once(name, key, values):
    configs = [_job_config(job) for job in _jobs([f"experiment={name}"])]
    assert [OmegaConf.select(cfg, key) for cfg in configs] == values


def test_paper_main_trains_every_method_and_evaluates_the_eight_benchmarks():
    cfg = _job_config(_jobs(["experiment=paper_main"])[0])
    assert list(cfg.stage.steps) == ["teach", "cot_sft", "rl", "comt_sft", "ccrl", "eval"]
    assert list(cfg.stage.compare) == ["cot_sft", "cot_sft_rl", "comt_sft", "comt_ccrl"]
    assert cfg.teacher.name == "llama3_1_70b"
    assert list(cfg.benchmark.suite) == ["gsm8k", "svamp", "asdiv", "mawps", "tabmwp", "gsm_hard", "gsm_symbolic",
                                         "multiarith"]
    assert cfg.benchmark.train.loader._target_ == cfg.benchmark.suite.gsm8k.loader._target_


def test_tiny_methods_runs_all_five_methods():
    cfg = _job_config(["experiment=tiny_methods"])
    assert list(cfg.stage.steps) == ["teach", "cot_sft", "rl", "comt_sft", "ccrl", "eval"]
    assert ["base", *cfg.stage.compare] == ["base", "cot_sft", "cot_sft_rl", "comt_sft", "comt_ccrl"]


@pytest.mark.parametrize("name", FULL)
def test_tiny_twin_runs_the_same_stages_on_the_embedded_default(name):
    full, tiny = (_job_config(_jobs([f"experiment={n}"])[0]) for n in (name, f"tiny_{name}"))
    assert (tiny.model.source, tiny.teacher.name, tiny.benchmark.name) == ("bundled:tiny", "rule", "synthetic")
    assert tiny.trainer.accelerator == "auto"
    assert (full.model.name, full.benchmark.name) != ("tiny", "synthetic")
    assert tiny.stage.name == full.stage.name
    for key in ("stage.steps", "stage.compare", "eval.methods"):
        if full.stage.name == "eval" and key != "eval.methods":
            continue
        assert OmegaConf.select(tiny, key) == OmegaConf.select(full, key), key


@pytest.mark.parametrize(("evaluation", "training"), [("ablation_symbolic", "paper_main"),
                                                      ("tiny_ablation_symbolic", "tiny_paper_main")])
def test_symbolic_ablation_evaluates_the_checkpoints_of_its_training_experiment(evaluation, training):
    for job in _jobs([f"experiment={evaluation}"]):
        model = next(o for o in job if o.startswith("model="))
        trained = _job_config([f"experiment={training}", model])
        evaluated = _job_config([f"experiment={evaluation}", model])
        for method in evaluated.eval.methods[1:]:
            assert checkpoint_dir(evaluated, method) == checkpoint_dir(trained, method)


def test_seeds_sweep_multiplies_an_experiment_by_three_seeds():
    jobs = _jobs(["experiment=paper_main", "sweep=seeds"])
    assert len(jobs) == 12
    configs = [_job_config(job) for job in jobs[:3]]
    assert {int(cfg.seed) for cfg in configs} == {0, 1, 2}
    assert len({cfg.tag for cfg in configs}) == 3


def test_a_command_line_value_replaces_the_swept_axis():
    jobs = _jobs(["experiment=paper_main", "model=qwen3_4b"])
    assert len(jobs) == 1 and _job_config(jobs[0]).model.name == "qwen3_4b"


def test_reward_weight_sweep_of_the_header_gives_one_folder_per_weight():
    overrides = ["experiment=ablation_reward", "reward=ccrl", "reward.weights.calibration=0.0,0.25,0.5,1.0"]
    configs = [_job_config(job) for job in _jobs(overrides)]
    assert [cfg.reward.weights.calibration for cfg in configs] == [0.0, 0.25, 0.5, 1.0]
    assert len({cfg.tag for cfg in configs}) == 4


SHARING = [n for n in EXPERIMENTS if "reuse_sft: true" in _path("experiment", n).read_text()]


@pytest.mark.parametrize("name", SHARING)
def test_jobs_that_share_their_sft_would_train_it_identically(name):
    """reuse_sft can only share what the jobs train alike: every job's SFT fingerprint (the config part of the
    reuse key) is one."""
    assert {"ablation_reward", "ablation_rl", "tiny_ablation_reward", "tiny_ablation_rl"} <= set(SHARING)
    jobs = _jobs([f"experiment={name}"])
    prints = {fingerprint(_job_config(job), FINGERPRINT_KEYS) for job in jobs}
    assert len(jobs) > 1 and len(prints) == 1


PLUGINS = {"joblib": "hydra_plugins.hydra_joblib_launcher", "slurm": "hydra_plugins.hydra_submitit_launcher"}


@pytest.mark.parametrize("launcher", sorted(PLUGINS))
def test_launcher_composes_when_its_plugin_is_installed(launcher):
    if importlib.util.find_spec(PLUGINS[launcher]) is None:
        pytest.skip(f"launcher={launcher} needs its Hydra plugin: pip install -e '.[{launcher}]'")
    cfg = _compose([f"launcher={launcher}", "experiment=paper_main"])
    assert cfg.hydra.launcher._target_.startswith(PLUGINS[launcher])
    if launcher == "slurm":
        assert cfg.hydra.launcher.tasks_per_node == 1 and cfg.hydra.launcher.additional_parameters.requeue


def test_launcher_files_name_their_install_command():
    for launcher in PLUGINS:
        text = (CONF / "launcher" / f"{launcher}.yaml").read_text()
        assert re.search(rf'pip install -e "\.\[{launcher}\]"', text), launcher
