"""What RL logs about a step's rollouts: accuracy, intermediate-step calibration and shapes.

Read from the step's reward (`cmt.rewards.combine.RewardOutput`): its outcome term is the accuracy, and its
judged steps, the ones the calibration term scored, give the step calibration, measured as eval measures
it (`cmt.eval.calibration.step_calibration`). Nothing is judged a second time.
"""

from __future__ import annotations

from cmt.eval.calibration import step_calibration
from cmt.generation import Sampled
from cmt.rewards.combine import RewardOutput


def rollout_metrics(rewards: RewardOutput, sampled: Sampled) -> dict[str, float]:
    """``train/*`` statistics of one batch of rollouts, from its rewards and its sampled tokens."""
    n = len(rewards.totals)
    intermediate = [step for steps in rewards.judged for step in steps if not step.step.is_final]
    steps = step_calibration([s.confidence for s in intermediate], [s.correct for s in intermediate], n)
    lengths = sampled.lengths.float()
    return {
        "train/accuracy": sum(rewards.terms["outcome"]) / n,
        # Judged steps (the final answer included) and judged intermediate steps, per rollout.
        "train/steps_per_rollout": sum(len(s) for s in rewards.judged) / n,
        "train/intermediate_steps_per_rollout": steps.pop("intermediate_steps"),
        **{f"train/{key}": value for key, value in steps.items()},
        "train/completion_length": float(lengths.mean()),
        "train/truncation_rate": float((~sampled.finished).float().mean()),
    }
