"""The rl and reward presets compose and validate; every bad value fails early with one line naming it.

Presets are composed by Hydra from the real conf/ groups (model, rl, reward), without the root config, so
these tests depend only on the files they check.
"""

import copy
import functools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from cmt.rewards.combine import RewardConfig
from cmt.rl.config import validate_rl_config

CONF = Path(__file__).resolve().parents[2] / "conf"
RL = ["ppo", "grpo", "dr_grpo", "dapo"]
REWARDS = ["outcome_only", "ccrl", "ccrl_brier", "ccrl_log", "ccrl_step"]


@functools.cache
def _composed(rl, reward, model):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(overrides=[f"+model={model}", f"+rl={rl}", f"+reward={reward}"])
    finally:
        GlobalHydra.instance().clear()


def compose_presets(rl="ppo", reward="ccrl", model="tiny"):
    """A fresh copy of the composed model + rl + reward presets (composition is cached: it is the slow part)."""
    return copy.deepcopy(_composed(rl, reward, model))


@pytest.mark.parametrize("rl", RL)
@pytest.mark.parametrize("reward", [r for r in REWARDS if r != "ccrl_step"])
def test_every_sequence_preset_pair_validates(rl, reward):
    cfg = compose_presets(rl, reward)
    assert isinstance(validate_rl_config(cfg.rl, cfg.reward), RewardConfig)


def test_step_granularity_validates_with_ppo_only():
    cfg = compose_presets("ppo", "ccrl_step")
    assert validate_rl_config(cfg.rl, cfg.reward).granularity == "step"
    cfg = compose_presets("grpo", "ccrl_step")
    with pytest.raises(ValueError, match="reward.granularity='step': per-token rewards need rl.advantage=gae"):
        validate_rl_config(cfg.rl, cfg.reward)


def test_presets_set_what_their_algorithm_means():
    ppo, grpo, dr, dapo = (compose_presets(name).rl for name in RL)
    assert (ppo.advantage, ppo.kl_mode, ppo.kl_estimator) == ("gae", "reward", "k1")
    assert (grpo.advantage, grpo.advantage_scale, grpo.loss_aggregation, grpo.kl_mode) == \
        ("grpo", "outcome", "sequence_mean", "loss")
    assert (dr.advantage_scale, dr.loss_aggregation, dr.kl_coef) == ("none", "sequence_sum_norm", 0.0)
    assert (dapo.clip_low, dapo.clip_high, dapo.loss_aggregation, dapo.dynamic_sampling.enabled) == \
        (0.2, 0.28, "token_mean", True)
    # The policy learning rate and the generation limit come from the model's hparams.
    assert ppo.optimizer.lr == 1.0e-4 and ppo.max_new_tokens == 96
    # LoRA students: 10x the full fine-tuning RL rate; the critic 10x the policy's; warm-ups for both.
    student = compose_presets("ppo", model="qwen2_5_7b").rl
    assert (student.optimizer.lr, student.critic.lr, student.warmup_steps, student.critic.warmup_steps) == \
        (1.0e-5, 1.0e-4, 10, 10)
    assert (ppo.critic.lr, ppo.warmup_steps, ppo.critic.warmup_steps) == (1.0e-3, 0, 0)


def test_reward_presets_differ_from_ccrl_only_where_they_say():
    ccrl = OmegaConf.to_container(compose_presets(reward="ccrl").reward)
    changes = {
        "outcome_only": {"weights": {**ccrl["weights"], "calibration": 0.0}},
        "ccrl_brier": {"weights": {**ccrl["weights"], "calibration": 1.0}, "calibration_score": "brier"},
        "ccrl_log": {"weights": {**ccrl["weights"], "calibration": 0.2}, "calibration_score": "log"},
        "ccrl_step": {"granularity": "step"},
    }
    for name, changed in changes.items():
        preset = OmegaConf.to_container(compose_presets(reward=name).reward)
        assert preset == {**ccrl, **changed, "name": name}


def _override(cfg, key, value):
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value, force_add=True)


@pytest.mark.parametrize("rl, key, value, message", [
    ("ppo", "rl.kl_coef", -0.1, "rl.kl_coef=-0.1: must be a finite number in [0.0, inf)"),
    ("ppo", "rl.kl_coef", float("inf"), "rl.kl_coef=inf"),
    ("ppo", "rl.micro_batch_size", 5, "rl.micro_batch_size=5: must divide rl.mini_batch_size=32"),
    ("ppo", "rl.mini_batch_size", 48, "rl.mini_batch_size=48: must divide the"),
    ("grpo", "rl.group_size", 1, "rl.group_size=1: the grpo estimator needs groups of at least 2"),
    ("ppo", "rl.clip_low", 1.0, "rl.clip_low=1.0: must be a finite number in (0.0, 1.0)"),
    ("ppo", "rl.clip_high", 0, "rl.clip_high=0"),
    ("ppo", "rl.temperature", 0.0, "rl.temperature=0.0"),
    ("ppo", "rl.gamma", 1.5, "rl.gamma=1.5: must be a finite number in [0.0, 1.0]"),
    ("ppo", "rl.lam", -0.1, "rl.lam=-0.1"),
    ("ppo", "rl.advantage", "vtrace", "rl.advantage='vtrace': choose one of gae, grpo"),
    ("ppo", "rl.policy_loss", "reinforce", "rl.policy_loss='reinforce': choose one of ppo_clip"),
    ("ppo", "rl.advantage_scale", "std", "rl.advantage_scale='std': choose one of group, batch, none, outcome"),
    ("ppo", "rl.loss_aggregation", "seq_mean", "rl.loss_aggregation='seq_mean'"),
    ("ppo", "rl.kl_estimator", "k2", "rl.kl_estimator='k2': choose one of k1, k3"),
    ("ppo", "rl.kl_mode", "both", "rl.kl_mode='both': choose one of reward, loss"),
    ("ppo", "rl.epochs", 0, "rl.epochs=0: must be an integer >= 1"),
    ("ppo", "rl.steps", 1.5, "rl.steps=1.5: must be an integer >= 1"),
    ("ppo", "rl.val_interval", True, "rl.val_interval=True: must be an integer >= 1"),
    ("ppo", "rl.optimizer.lr", float("nan"), "rl.optimizer.lr=nan"),
    ("ppo", "rl.critic.lr", 0.0, "rl.critic.lr=0.0"),
    ("ppo", "rl.critic.value_clip", -1.0, "rl.critic.value_clip=-1.0"),
    ("ppo", "rl.critic.warmup_steps", -1, "rl.critic.warmup_steps=-1: must be an integer >= 0"),
    ("ppo", "rl.critic.warmup_steps", 16, "rl.critic.warmup_steps=16: must be below rl.steps=16 (the policy would"),
    ("ppo", "rl.warmup_steps", 0.5, "rl.warmup_steps=0.5: must be an integer >= 0"),
    ("ppo", "rl.whiten_advantages", "yes", "rl.whiten_advantages='yes': must be true or false"),
    ("dapo", "rl.dynamic_sampling.enabled", "yes", "rl.dynamic_sampling.enabled='yes': must be true or false"),
    ("dapo", "rl.dynamic_sampling.tolerance", -1e-3, "rl.dynamic_sampling.tolerance=-0.001"),
    ("dapo", "rl.dynamic_sampling.max_rounds", 0, "rl.dynamic_sampling.max_rounds=0: must be an integer >= 1"),
    ("ppo", "rl.max_grad_norm", 0.0, "rl.max_grad_norm=0.0"),
    ("ppo", "rl.val_n", 0, "rl.val_n=0: must be an integer >= 1"),
    ("ppo", "reward.weights.calibration", float("nan"), "reward.weights.calibration=nan: must be a finite number"),
    ("ppo", "reward.weights.bonus", 1.0, "reward.weights.bonus: unknown reward term"),
    ("ppo", "reward.calibration_score", "breir", "reward.calibration_score='breir': choose one of signed, brier, log"),
    ("ppo", "reward.correctness", "gold", "reward.correctness='gold'"),
    ("ppo", "reward.granularity", "token", "reward.granularity='token'"),
])
def test_bad_values_fail_with_one_line_naming_them(rl, key, value, message):
    cfg = compose_presets(rl)
    _override(cfg, key, value)
    with pytest.raises(ValueError) as error:
        validate_rl_config(cfg.rl, cfg.reward)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_critic_settings_are_checked_only_for_gae_and_sampling_settings_only_when_enabled():
    cfg = compose_presets("grpo")
    _override(cfg, "rl.critic.lr", 0.0)
    _override(cfg, "rl.dynamic_sampling.tolerance", -1.0)
    validate_rl_config(cfg.rl, cfg.reward)


def test_dynamic_sampling_needs_groups():
    cfg = compose_presets("dapo")
    _override(cfg, "rl.advantage", "gae")
    _override(cfg, "rl.group_size", 1)
    _override(cfg, "rl.prompts_per_step", 64)
    with pytest.raises(ValueError, match="rl.group_size=1: dynamic sampling needs groups of at least 2"):
        validate_rl_config(cfg.rl, cfg.reward)


def test_missing_key_is_named():
    cfg = compose_presets("ppo")
    with open_dict(cfg):
        del cfg.rl.gamma
    with pytest.raises(ValueError, match=r"^rl.gamma is missing$"):
        validate_rl_config(cfg.rl, cfg.reward)
