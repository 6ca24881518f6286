"""The frozen reference of RL's KL term, whichever form it takes: a separate model, a frozen LoRA adapter on
the policy, or the policy with its adapters off (`cmt.stages.rl.build_reference` chooses)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def reference_model(policy: torch.nn.Module, separate: torch.nn.Module | None = None,
                    adapter: str | None = None) -> Iterator[torch.nn.Module]:
    """The model to run reference passes with.

    Args:
        policy: The policy being trained (PEFT-wrapped when ``separate`` is None).
        separate: A separate frozen reference model; yielded as it is.
        adapter: With a LoRA policy and no ``separate``: the name of the frozen adapter holding the SFT adapter
            as it was when RL started, activated for the reference; None: the policy with its adapters off
            (right when RL's adapters are fresh over SFT weights, so the base is the SFT model).

    The policy-as-reference runs in eval mode, like a separate reference: no dropout, and no activation
    checkpointing, which would stop `cmt.rl.forward` from running each prompt once. PEFT's ``set_adapter``
    marks the adapter it activates trainable and the others frozen; every parameter's ``requires_grad`` is
    put back afterwards, so the reference adapter never trains and the policy's adapter always does.
    """
    if separate is not None:
        yield separate
        return
    was_training = policy.training
    policy.eval()
    try:
        if adapter is None:
            with policy.disable_adapter():
                yield policy
            return
        trainable = {name: p.requires_grad for name, p in policy.named_parameters()}
        active = policy.active_adapter
        policy.set_adapter(adapter)
        try:
            yield policy
        finally:
            policy.set_adapter(active)
            for name, p in policy.named_parameters():
                p.requires_grad_(trainable[name])
    finally:
        policy.train(was_training)
