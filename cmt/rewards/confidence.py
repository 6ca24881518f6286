"""A step's confidence: the probability the policy gave the tokens that spell its value.

A value such as ``135`` may span several tokens (one per digit for Qwen and the tiny model), so the
per-token probabilities are reduced to one number in [0, 1]:

- ``geometric_mean`` (default): ``exp(mean log p)``, the per-token probability of the whole value,
  independent of how many tokens it has; the same reduction evaluation uses for answer confidence.
- ``min``: the least certain token (one doubtful digit makes the value doubtful).
- ``first``: the first token only (the leading digit is where a model commits to a magnitude).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CONFIDENCE_KINDS = ("geometric_mean", "min", "first")


def step_confidence(logprobs: Sequence[float], token_indices: Sequence[int], kind: str = "geometric_mean") -> float:
    """Confidence in [0, 1] of one step from its value tokens' log-probabilities.

    Args:
        logprobs: Per-token log-probabilities of the whole completion (``Rollout.logprobs``).
        token_indices: The value's tokens (``Step.token_indices``), in order.
        kind: ``geometric_mean``, ``min`` or ``first``.

    Returns:
        The confidence; log-probabilities above 0 (numerical noise) are read as 0.

    Raises:
        ValueError: For an unknown kind or an empty ``token_indices``.
    """
    if not token_indices:
        raise ValueError("a step needs at least one token to have a confidence")
    values = [min(float(logprobs[i]), 0.0) for i in token_indices]
    if kind == "geometric_mean":
        return math.exp(sum(values) / len(values))
    if kind == "min":
        return math.exp(min(values))
    if kind == "first":
        return math.exp(values[0])
    raise ValueError(f"unknown confidence kind {kind!r}; choose one of {', '.join(CONFIDENCE_KINDS)}")
