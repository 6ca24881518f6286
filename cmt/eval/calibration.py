"""Calibration metrics over (confidence, correct) pairs: ECE, Brier score, overconfident error rate."""

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
