"""CCRL's reward layer: find the numeric steps of a rollout, read the policy's confidence in each, judge
them, and combine answer correctness, calibration and format into the reward (see docs/rl.md).

A training step calls, in order::

    config = RewardConfig.from_mapping(cfg.reward)          # or validate_rl_config(cfg.rl, cfg.reward)
    rollouts = rollouts_from_sampled(tokenizer, sampled, problem_indices)
    out = compute_rewards(rollouts, problems, config)
    out.scores() / out.token_rewards(T) / out.metrics()
"""

from cmt.rewards.combine import RewardConfig, RewardOutput, compute_rewards
from cmt.rewards.types import Rollout, rollouts_from_sampled

__all__ = ["RewardConfig", "RewardOutput", "Rollout", "compute_rewards", "rollouts_from_sampled"]
