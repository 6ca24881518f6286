"""The rl node read once into typed settings (cmt.rl.settings): every preset converts, a missing key fails."""

import dataclasses

import pytest
from omegaconf import OmegaConf

from cmt.rl.settings import RLSettings
from tests.conftest import CONF

PRESETS = sorted(p.stem for p in (CONF / "rl").glob("*.yaml"))
TYPES = {"int": int, "float": float, "bool": bool, "str": str}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_reads_into_typed_settings(cfg_factory, preset):
    node = cfg_factory([f"rl={preset}"]).rl
    settings = RLSettings.of(node)
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        if dataclasses.is_dataclass(value):
            assert all(isinstance(getattr(value, f.name), TYPES[str(f.type)]) for f in dataclasses.fields(value))
        else:
            assert isinstance(value, TYPES[str(item.type)]), item.name
            assert value == node[item.name]
    assert settings.critic.warmup_steps == node.critic.warmup_steps


def test_numbers_written_as_other_types_are_converted(cfg_factory):
    """YAML reads ``kl_coef: 0`` as an int and a sweep may pass ``rl.temperature=1``: the step gets floats."""
    node = OmegaConf.to_container(cfg_factory(["rl=grpo", "rl.kl_coef=0", "rl.temperature=1"]).rl, resolve=True)
    settings = RLSettings.of(node)
    assert type(settings.kl_coef) is float and type(settings.temperature) is float


def test_a_node_without_a_key_the_step_reads_fails_at_once(cfg_factory):
    node = OmegaConf.to_container(cfg_factory(["rl=grpo"]).rl, resolve=True)
    del node["dynamic_sampling"]["max_rounds"]
    with pytest.raises(KeyError, match="max_rounds"):
        RLSettings.of(node)
