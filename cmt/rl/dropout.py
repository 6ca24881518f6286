"""Turn dropout off in a model that RL trains.

PPO's ratio compares the policy that sampled a token with the policy being updated. Rollouts are sampled
in eval mode (no dropout) and the update runs in training mode (activation checkpointing needs it), so a
model with dropout on (LoRA's ``lora_dropout``, attention dropout) would score the same tokens with a
different, randomly thinned network: the first update's ratio would not be 1 and clipping would fire on
noise. RL therefore trains with every dropout probability set to 0, in sampling and update alike.
"""

from __future__ import annotations

import torch

# Float attributes that transformers' attention modules read as a dropout probability in training mode
# (e.g. ``Qwen3Attention.attention_dropout``, copied from the config when the model was built).
_DROPOUT_ATTRIBUTES = ("attention_dropout", "dropout", "dropout_p", "attn_dropout")


def disable_dropout(model: torch.nn.Module) -> int:
    """Set every dropout probability in ``model`` to 0, in place.

    Covers ``torch.nn.Dropout`` modules (LoRA's ``lora_dropout`` among them) and float dropout attributes
    of attention modules (and the model config's, so a module built later reads 0 too).

    Args:
        model: Any module tree (a PEFT-wrapped model, a critic).

    Returns:
        How many dropouts were non-zero before.
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            changed += module.p > 0
            module.p = 0.0
        for name in _DROPOUT_ATTRIBUTES:
            value = getattr(module, name, None)
            if isinstance(value, float) and not isinstance(value, bool):
                changed += value > 0
                setattr(module, name, 0.0)
        config = getattr(module, "config", None)
        for name in _DROPOUT_ATTRIBUTES:
            if isinstance(getattr(config, name, None), float):
                setattr(config, name, 0.0)
    return int(changed)
