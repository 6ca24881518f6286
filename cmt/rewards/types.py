"""The record every reward term scores: one sampled completion with its per-token log-probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cmt.generation import Sampled, decode_with_offsets


@dataclass(frozen=True)
class Rollout:
    """One completion sampled for one problem.

    Attributes:
        problem_index: Index of the problem in the ``problems`` list passed to the reward terms. With
            ``group_size`` rollouts per prompt laid out group by group, rollout ``i`` has index
            ``i // group_size``.
        text: The completion decoded token by token (special tokens included, so ``offsets`` index it).
        token_ids: The generated tokens, EOS included when the rollout finished.
        logprobs: Log-probability of each generated token under the policy that sampled it; step
            confidence is read from these. Sample at temperature 1 (or pass re-scored log-probs) for
            confidence to mean the policy's own probability.
        finished: Whether the completion ended with EOS (False: cut at ``max_new_tokens``).
        offsets: (start, end) character span of each token in ``text``.

    Raises:
        ValueError: When the rollout is empty or its per-token lists have different lengths.
    """

    problem_index: int
    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finished: bool
    offsets: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not self.token_ids:
            raise ValueError("a rollout needs at least one token (max_new_tokens must be >= 1)")
        if not len(self.token_ids) == len(self.logprobs) == len(self.offsets):
            raise ValueError(f"rollout has {len(self.token_ids)} tokens, {len(self.logprobs)} log-probs and "
                             f"{len(self.offsets)} offsets; they must match")

    @property
    def written(self) -> str:
        """The text the policy wrote: ``text`` without the EOS that ends a finished rollout (its decoded
        form, ``<|im_end|>``, would otherwise join a text answer's last word)."""
        return self.text[:self.offsets[-1][0]] if self.finished else self.text

    @classmethod
    def from_tokens(cls, tokenizer, problem_index: int, token_ids: Sequence[int], logprobs: Sequence[float],
                    finished: bool) -> Rollout:
        """Build a rollout from generated ids, decoding them with exact per-token character offsets."""
        text, offsets = decode_with_offsets(tokenizer, list(token_ids))
        return cls(problem_index, text, tuple(int(t) for t in token_ids), tuple(float(x) for x in logprobs),
                   bool(finished), tuple(offsets))


def rollouts_from_sampled(tokenizer, sampled: Sampled, problem_indices: Sequence[int]) -> list[Rollout]:
    """Turn a batch from :func:`cmt.generation.sample` into rollouts (padding after each end removed).

    Args:
        tokenizer: The policy's tokenizer.
        sampled: (B, T) tokens and log-probs with per-row ``lengths`` and ``finished``.
        problem_indices: (B,) the problem each row was sampled for.

    Raises:
        ValueError: When ``problem_indices`` does not have one entry per row.
    """
    if len(problem_indices) != sampled.tokens.shape[0]:
        raise ValueError(f"{len(problem_indices)} problem indices for {sampled.tokens.shape[0]} sampled rows")
    rollouts = []
    for row, problem_index in enumerate(problem_indices):
        n = int(sampled.lengths[row])
        rollouts.append(Rollout.from_tokens(tokenizer, int(problem_index), sampled.tokens[row, :n].tolist(),
                                            sampled.logprobs[row, :n].tolist(), bool(sampled.finished[row])))
    return rollouts
