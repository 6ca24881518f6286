"""Truncated importance sampling between the rollout engine and the trainer (cmt.rl.vllm_rollouts)."""

import math

import torch

from cmt.rl.vllm_rollouts import truncated_importance_weights


def test_weights_are_the_probability_ratio_capped_and_one_off_the_mask():
    trainer = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -3.0, 0.0]])
    behaviour = torch.tensor([[-1.0, -2.5, -2.0], [-0.2, -3.0, -9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    weights, metrics = truncated_importance_weights(trainer, behaviour, mask, cap=2.0)
    expected = torch.tensor([[1.0, math.exp(0.5), 2.0], [math.exp(0.1), 1.0, 1.0]])
    assert torch.allclose(weights, expected)
    assert metrics["rollout/is_mismatch_max"] == 1.5  # the masked-out 9.0 gap does not count
    assert abs(metrics["rollout/is_mismatch_mean"] - (0 + 0.5 + 1.5 + 0.1 + 0) / 5) < 1e-6
    assert abs(metrics["rollout/is_weight_mean"] - float(expected[mask.bool()].mean())) < 1e-6


def test_an_engine_that_agrees_with_the_trainer_changes_nothing():
    logprobs = -torch.rand(4, 6)
    weights, metrics = truncated_importance_weights(logprobs, logprobs.clone(), torch.ones(4, 6))
    assert torch.equal(weights, torch.ones(4, 6)) and metrics["rollout/is_mismatch_max"] == 0.0
