"""The harness's settings: perf/config.yaml, the GPU overrides, then ``--set key=value`` overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path(__file__).resolve().parent / "config.yaml"


def _parse_value(text: str) -> Any:
    """``--set`` values are YAML scalars: ``4`` is an int, ``1e-3`` a float, ``null`` None."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            return value
    return value


def apply_override(settings: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` override in place.

    Raises:
        ValueError: The assignment has no ``=``, or names a key the config does not have.
    """
    if "=" not in assignment:
        raise ValueError(f"--set takes key=value, got {assignment!r}")
    key, text = assignment.split("=", 1)
    *parents, leaf = key.strip().split(".")
    node = settings
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise ValueError(  # a bad key, not a bad type
                f"unknown setting {key!r} (no section {part!r} in perf/config.yaml)")
        node = node[part]
    if leaf not in node:
        raise ValueError(f"unknown setting {key!r}; the known keys of its section: {', '.join(node)}")
    node[leaf] = _parse_value(text)


def load_settings(path: str | Path | None = None, overrides: list[str] | None = None,
                  model: str | None = None, device: str | None = None, dtype: str | None = None,
                  peak_flops: float | None = None) -> dict[str, Any]:
    """The resolved settings: the file, then the ``cuda`` block on a GPU, then the options and overrides.

    Raises:
        ValueError: An unknown key, or a bad value (:func:`validate`; one line naming it).
    """
    raw = yaml.safe_load(Path(path or DEFAULT_CONFIG).read_text())
    settings = copy.deepcopy(raw)
    cuda_block = settings.pop("cuda", {}) or {}
    for key, value in (("model", model), ("device", device), ("dtype", dtype), ("peak_flops", peak_flops)):
        if value is not None:
            settings[key] = value
    if str(settings["device"]).startswith("cuda"):
        for section, values in cuda_block.items():
            settings[section].update(values)
    for assignment in overrides or []:
        apply_override(settings, assignment)
    validate(settings)
    data = Path(settings["eval"]["data"])
    settings["eval"]["data"] = str(data if data.is_absolute() else (ROOT / data).resolve())
    return settings


def validate(settings: dict[str, Any]) -> None:
    """Check the settings the vLLM comparisons read before any worker starts.

    Raises:
        ValueError: One line naming the key, what it holds and what it takes.
    """
    from cmt.vllm_engine import validate_vllm_config

    engine = settings["vllm"]
    if engine["trl_sampler"] not in ("hf", "vllm"):
        raise ValueError(f"vllm.trl_sampler={engine['trl_sampler']!r}: choose hf (TRL's transformers generate) "
                         "or vllm (TRL's use_vllm, colocated)")
    validate_vllm_config(engine)
    cap = settings["rl"]["rollout_is_cap"]
    if isinstance(cap, bool) or not isinstance(cap, (int, float)) or cap < 1:
        raise ValueError(f"rl.rollout_is_cap={cap!r}: must be a number >= 1 (the largest importance weight)")
