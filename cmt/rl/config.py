"""Check the ``rl`` and ``reward`` config nodes before any model is loaded.

A typo in a sweep (``rl.kl_coef=-0.1``, ``reward.calibration_score=breir``) or sizes that do not divide
should fail in a second with one line naming the key, not an hour later inside a training step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial

from cmt import config_checks as checks
from cmt.errors import ConfigError
from cmt.rewards.combine import RewardConfig
from cmt.rl.advantages import ESTIMATORS, GROUP_SCALES
from cmt.rl.losses import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES

KL_MODES = ("reward", "loss")
# What samples the rollouts (rl.rollout): the built-in sampler, or a colocated vLLM engine.
ROLLOUTS = ("hf", "vllm")


# The shared checks (cmt.config_checks), naming keys under ``rl.``.
_choice = partial(checks.choice, prefix="rl")
_positive_int = partial(checks.positive_int, prefix="rl")
_number = partial(checks.number, prefix="rl")
_boolean = partial(checks.boolean, prefix="rl")
_integer = partial(checks.integer, prefix="rl")


def validate_rl_config(rl_cfg: Mapping, reward_cfg: Mapping) -> RewardConfig:
    """Validate the RL settings and the reward settings together.

    Args:
        rl_cfg: The ``rl`` node (``conf/rl/*.yaml``), interpolations resolvable.
        reward_cfg: The ``reward`` node (``conf/reward/*.yaml``).

    Returns:
        The validated reward settings, ready for :func:`cmt.rewards.combine.compute_rewards`.

    Raises:
        ConfigError: One line naming the first offending key, its value and what is allowed.
    """
    inf = math.inf
    advantage = _choice(rl_cfg, "advantage", tuple(ESTIMATORS))
    _choice(rl_cfg, "policy_loss", tuple(POLICY_LOSSES))
    _choice(rl_cfg, "advantage_scale", GROUP_SCALES)
    _choice(rl_cfg, "loss_aggregation", AGGREGATIONS)
    _choice(rl_cfg, "kl_estimator", tuple(KL_ESTIMATORS))
    _choice(rl_cfg, "kl_mode", KL_MODES)
    # Absent from rl nodes built by hand: the built-in sampler.
    rollout = checks.get(rl_cfg, "rollout", "rl", default="hf")
    if isinstance(rollout, bool) or rollout not in ROLLOUTS:
        raise checks.fail("rollout", rollout, f"choose one of {', '.join(ROLLOUTS)}", "rl")
    if rollout == "vllm":
        _number(rl_cfg, "rollout_is_cap", 1.0, inf, high_open=True)
        from cmt.vllm_engine import require_vllm

        require_vllm("rl.rollout")
    sizes = {key: _positive_int(rl_cfg, key) for key in
             ("group_size", "prompts_per_step", "mini_batch_size", "micro_batch_size", "epochs", "max_new_tokens",
              "steps", "val_interval", "val_n")}
    if advantage == "grpo" and sizes["group_size"] < 2:
        raise ConfigError(f"rl.group_size={sizes['group_size']}: the grpo estimator needs groups of at least 2")
    rollouts = sizes["prompts_per_step"] * sizes["group_size"]
    if rollouts % sizes["mini_batch_size"]:
        raise ConfigError(f"rl.mini_batch_size={sizes['mini_batch_size']}: must divide the {rollouts} rollouts per "
                         "step (rl.prompts_per_step * rl.group_size)")
    if sizes["mini_batch_size"] % sizes["micro_batch_size"]:
        raise ConfigError(f"rl.micro_batch_size={sizes['micro_batch_size']}: must divide "
                         f"rl.mini_batch_size={sizes['mini_batch_size']}")
    _number(rl_cfg, "kl_coef", 0.0, inf, high_open=True)
    _number(rl_cfg, "clip_low", 0.0, 1.0, low_open=True, high_open=True)
    _number(rl_cfg, "clip_high", 0.0, inf, low_open=True, high_open=True)
    _number(rl_cfg, "gamma", 0.0, 1.0)
    _number(rl_cfg, "lam", 0.0, 1.0)
    _number(rl_cfg, "temperature", 0.0, inf, low_open=True, high_open=True)
    _number(rl_cfg, "max_grad_norm", 0.0, inf, low_open=True, high_open=True)
    _number(rl_cfg, "optimizer.lr", 0.0, inf, low_open=True, high_open=True)
    _boolean(rl_cfg, "whiten_advantages")
    _integer(rl_cfg, "warmup_steps", 0)
    if advantage == "gae":
        _number(rl_cfg, "critic.lr", 0.0, inf, low_open=True, high_open=True)
        _number(rl_cfg, "critic.value_clip", 0.0, inf, low_open=True, high_open=True)
        if _integer(rl_cfg, "critic.warmup_steps", 0) >= sizes["steps"]:
            raise ConfigError(f"rl.critic.warmup_steps={rl_cfg['critic']['warmup_steps']}: must be below "
                             f"rl.steps={sizes['steps']} (the policy would never train); lower it or raise rl.steps")
    if _boolean(rl_cfg, "dynamic_sampling.enabled"):
        if sizes["group_size"] < 2:
            raise ConfigError(f"rl.group_size={sizes['group_size']}: dynamic sampling needs groups of at least 2")
        _number(rl_cfg, "dynamic_sampling.tolerance", 0.0, inf, high_open=True)
        _positive_int(rl_cfg, "dynamic_sampling.max_rounds")
    reward = RewardConfig.from_mapping(reward_cfg)
    if reward.granularity == "step" and advantage != "gae":
        raise ConfigError(f"reward.granularity='step': per-token rewards need rl.advantage=gae, got {advantage!r} "
                         "(use granularity=sequence)")
    return reward
