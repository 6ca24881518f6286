"""The ``rl`` config node as typed settings, read once after `cmt.rl.config.validate_rl_config` checked it.

The RL module reads every value from here: each has its type, so no training step casts a config value, and
a key the module reads but the node lacks fails at construction, before any rollout is sampled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class CriticSettings:
    """``rl.critic``: PPO's value model (its learning rate goes to the optimizer the stage builds)."""

    warmup_steps: int
    value_clip: float


@dataclass(frozen=True)
class DynamicSamplingSettings:
    """``rl.dynamic_sampling``: DAPO's refill of groups whose rewards all agree (`cmt.rl.filters`)."""

    enabled: bool
    tolerance: float
    max_rounds: int


@dataclass(frozen=True)
class RLSettings:
    """What one RL step reads from the ``rl`` node (conf/rl/*.yaml says what each value does)."""

    group_size: int
    max_new_tokens: int
    temperature: float
    mini_batch_size: int
    micro_batch_size: int
    epochs: int
    max_grad_norm: float
    warmup_steps: int
    advantage: str
    advantage_scale: str
    whiten_advantages: bool
    gamma: float
    lam: float
    policy_loss: str
    clip_low: float
    clip_high: float
    loss_aggregation: str
    kl_coef: float
    kl_estimator: str
    kl_mode: str
    rollout_is_cap: float
    critic: CriticSettings
    dynamic_sampling: DynamicSamplingSettings

    @classmethod
    def of(cls, node: Mapping[str, Any]) -> RLSettings:
        """Typed settings from a validated ``rl`` node (a DictConfig or dict; keys not read here are ignored).

        Raises:
            KeyError: The node lacks a key a step reads.
        """
        return _build(cls, node)


def _build(kind: type, node: Mapping[str, Any]) -> Any:
    """An instance of the settings dataclass ``kind``, each field converted to its annotated type."""
    nested = {"CriticSettings": CriticSettings, "DynamicSamplingSettings": DynamicSamplingSettings}
    scalars = {"int": int, "float": float, "bool": bool, "str": str}
    values = {}
    for item in fields(kind):
        value = node[item.name]
        annotation = str(item.type)
        values[item.name] = _build(nested[annotation], value) if annotation in nested else scalars[annotation](value)
    return kind(**values)
