"""DAPO's dynamic sampling: keep only prompt groups whose rewards vary, and refill the batch with more.

A group whose rollouts all earn the same reward (all right, or all wrong) has zero group-relative
advantage, so it adds no gradient but still dilutes the batch. DAPO drops such groups and samples more
prompts until the batch is full again. This module decides what to drop (:func:`varied_groups`) and puts
the kept groups of several sampling rounds into one batch (:func:`gather_groups`); the RL module
(`cmt.modules.rl`) samples the extra rounds, up to ``rl.dynamic_sampling.max_rounds``, and refills with them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from cmt.generation import Sampled


def varied_groups(scores: torch.Tensor, group_size: int, tolerance: float = 0.0) -> torch.Tensor:
    """(B,) bool: True for every rollout of a group whose rewards span more than ``tolerance``.

    Args:
        scores: (B,) sequence rewards, groups of ``group_size`` adjacent (see cmt.rl.advantages).
        group_size: Rollouts per prompt.
        tolerance: Spreads (max - min) at or below this count as constant; 0 is exact equality. The
            calibration term makes rewards continuous, so a small tolerance can drop groups that differ
            only by noise-level confidence.

    Raises:
        ValueError: When B is not a multiple of ``group_size``.
    """
    if scores.shape[0] % group_size:
        raise ValueError(f"{scores.shape[0]} rollouts do not split into groups of {group_size}")
    groups = scores.view(-1, group_size)
    spread = groups.max(dim=1).values - groups.min(dim=1).values
    return (spread > tolerance).repeat_interleave(group_size)


@dataclass
class SamplingRound:
    """One round of sampling: its problems, rollouts (``group_size`` per problem, adjacent), the sampler's
    tensors, the left-padded prompts (``input_ids``, ``attention_mask``: one row per problem, or one per
    rollout when each rollout has its own prompt) and which rollouts to keep."""

    problems: list[Any]
    rollouts: list[Any]
    sampled: Sampled
    inputs: dict[str, torch.Tensor]
    keep: torch.Tensor


def gather_groups(rounds: Sequence[SamplingRound], group_size: int, target: int, pad_id: int
                  ) -> tuple[list[Any], list[Any], Sampled, dict[str, torch.Tensor]]:
    """The first ``target`` kept groups of ``rounds``, in order, as one batch laid out group by group.

    Completions are right-padded (``pad_id``, log-prob 0) to the longest, prompts left-padded (``pad_id``,
    attention 0) to the widest, keeping the rounds' layout of prompt rows (one per problem or one per
    rollout); each rollout's ``problem_index`` points into the returned problems.

    Returns:
        (problems, rollouts, sampled, inputs).

    Raises:
        ValueError: When no round kept a group (the caller trains on nothing that step).
    """
    picked: list[tuple[SamplingRound, int]] = []
    for round_ in rounds:
        for group in range(len(round_.problems)):
            if len(picked) < target and bool(round_.keep[group * group_size]):
                picked.append((round_, group))
    if not picked:
        raise ValueError("no sampling round kept a group")
    width = max(r.sampled.tokens.shape[1] for r, _ in picked)
    prompt_width = max(r.inputs["input_ids"].shape[1] for r, _ in picked)
    problems, rollouts, tokens, logprobs, lengths, finished, prompt_ids, prompt_mask = [], [], [], [], [], [], [], []
    for new_index, (round_, group) in enumerate(picked):
        rows = slice(group * group_size, (group + 1) * group_size)
        problems.append(round_.problems[group])
        rollouts += [dataclasses.replace(r, problem_index=new_index) for r in round_.rollouts[rows]]
        extra = width - round_.sampled.tokens.shape[1]
        tokens.append(F.pad(round_.sampled.tokens[rows], (0, extra), value=pad_id))
        logprobs.append(F.pad(round_.sampled.logprobs[rows], (0, extra), value=0.0))
        lengths.append(round_.sampled.lengths[rows])
        finished.append(round_.sampled.finished[rows])
        lead = prompt_width - round_.inputs["input_ids"].shape[1]
        per_problem = round_.inputs["input_ids"].shape[0] // len(round_.problems)
        prompt_rows = slice(group * per_problem, (group + 1) * per_problem)
        prompt_ids.append(F.pad(round_.inputs["input_ids"][prompt_rows], (lead, 0), value=pad_id))
        prompt_mask.append(F.pad(round_.inputs["attention_mask"][prompt_rows], (lead, 0), value=0))
    sampled = Sampled(torch.cat(tokens), torch.cat(logprobs), torch.cat(lengths), torch.cat(finished))
    return problems, rollouts, sampled, {"input_ids": torch.cat(prompt_ids), "attention_mask": torch.cat(prompt_mask)}
