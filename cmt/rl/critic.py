"""PPO's value model: the policy's transformer trunk (a copy) with a scalar head, one value per position."""

from __future__ import annotations

import torch


class Critic(torch.nn.Module):
    """A value model: a transformer trunk and a scalar head, one value per position.

    The head starts at zero, so every first value is 0 and the first advantages are the rewards' own.
    """

    def __init__(self, trunk: torch.nn.Module, hidden_size: int):
        super().__init__()
        self.trunk = trunk
        self.head = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) float32 values.

        The head runs outside autocast, in its weights' dtype: under ``bf16-mixed`` they are float32, and
        values keep float32's precision (bf16 keeps 8 significant bits, steps of 0.004-0.008 near 1: as coarse as
        the differences GAE takes between neighbouring values).
        """
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids).last_hidden_state
        with torch.autocast(hidden.device.type, enabled=False):
            return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float()
