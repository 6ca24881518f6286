"""Metrics of evaluations that draw several samples per problem: pass@k and majority vote.

With ``eval.samples`` = n > 1 each problem gets n sampled completions. Two questions are then asked of them:
could the model solve it at all in k tries (pass@k, the unbiased estimator of Chen et al. 2021, "Evaluating
Large Language Models Trained on Code", which uses all n samples rather than only the first k), and does
the answer the model gives most often solve it (majority vote, or self-consistency).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` samples drawn without replacement from ``n`` is correct.

    ``1 - C(n - c, k) / C(n, k)``, computed as a product so that large ``n`` neither overflows nor
    loses precision.

    Args:
        n: Samples drawn for the problem.
        c: How many of them are correct.
        k: Tries allowed, ``1 <= k <= n``.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def majority_vote(answers: Sequence[str | None]) -> int | None:
    """Index of the first sample whose answer is the most frequent one; None when no sample has an answer.

    Samples without an extracted answer (None) do not vote. A tie goes to the answer that occurs first,
    so the result is deterministic. Returning an index (not the answer) lets the caller reuse that
    sample's correctness, checked under the problem's own answer type and tolerance.
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(i for i, a in enumerate(answers) if a is not None and counts[a] == best)
