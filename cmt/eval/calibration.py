"""Calibration metrics over (confidence, correct) pairs: ECE, Brier score, overconfident error rate; and the
same for the intermediate steps a model writes (:func:`step_calibration`)."""

from __future__ import annotations

from collections.abc import Sequence


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE with ``bins`` equal-width bins: the bin-size-weighted mean |accuracy - confidence|."""
    if not confidences:
        return float("nan")
    total, n = 0.0, len(confidences)
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidences) if low < c <= high or (b == 0 and c == 0.0)]
        if members:
            accuracy = sum(bool(correct[i]) for i in members) / len(members)
            confidence = sum(confidences[i] for i in members) / len(members)
            total += len(members) / n * abs(accuracy - confidence)
    return total


def brier_score(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Mean squared difference between confidence and correctness (0 is perfect)."""
    if not confidences:
        return float("nan")
    return sum((c - float(k)) ** 2 for c, k in zip(confidences, correct, strict=True)) / len(confidences)


def overconfident_error_rate(confidences: Sequence[float], correct: Sequence[bool], threshold: float = 0.9) -> float:
    """Fraction of all answers that are wrong yet given with confidence above ``threshold``."""
    if not confidences:
        return float("nan")
    return sum(1 for c, k in zip(confidences, correct, strict=True) if c > threshold and not k) / len(confidences)


def step_calibration(confidences: Sequence[float], correct: Sequence[bool], outputs: int,
                     threshold: float = 0.9) -> dict[str, float]:
    """Calibration of judged intermediate steps (:func:`cmt.rewards.calibration.judge_steps`), pooled over
    ``outputs`` completions: what CCRL trains, measured the same way in RL's logs and in eval.

    Returns:
        ``intermediate_steps`` (judged per output), ``step_accuracy``, ``step_ece``, ``confidence_right_steps``,
        ``confidence_wrong_steps`` and ``overconfident_step_error_rate`` (wrong steps above ``threshold``, as
        a fraction of all judged steps); NaN where there is no step to measure.
    """
    right = [c for c, k in zip(confidences, correct, strict=True) if k]
    wrong = [c for c, k in zip(confidences, correct, strict=True) if not k]
    nan = float("nan")
    return {
        "intermediate_steps": len(confidences) / outputs if outputs else nan,
        "step_accuracy": len(right) / len(confidences) if confidences else nan,
        "step_ece": expected_calibration_error(confidences, correct),
        "confidence_right_steps": sum(right) / len(right) if right else nan,
        "confidence_wrong_steps": sum(wrong) / len(wrong) if wrong else nan,
        "overconfident_step_error_rate": overconfident_error_rate(confidences, correct, threshold),
    }
