"""Checks of single config values, each failing with one line: ``key=value: what is allowed``.

Shared by the RL config check (`cmt.rl.config`) and the whole-config check (`cmt.validation`). Every
helper reads ``path`` (dotted) under ``node`` (a dict or DictConfig) and names the value in its message as
``<prefix>.<path>``, so a check of the ``rl`` node with ``prefix="rl"`` says ``rl.kl_coef=-0.1: ...`` and a
check of the root config with no prefix says ``sft.optimizer.lr=-1: ...``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cmt.errors import ConfigError

MISSING = object()


def key_of(path: str, prefix: str = "") -> str:
    """The full dotted key of ``path`` under ``prefix``."""
    return f"{prefix}.{path}" if prefix else path


def get(node: Mapping, path: str, prefix: str = "", default: Any = MISSING) -> Any:
    """The value at ``path`` (interpolations resolved), ``default`` when absent, else a ConfigError.

    Raises:
        ConfigError: The key is absent (and no default), is ``???``, or its interpolation does not resolve.
    """
    value: Any = node
    walked = []
    for part in path.split("."):
        walked.append(part)
        key = key_of(".".join(walked), prefix)
        if not isinstance(value, Mapping):
            value = MISSING
        else:
            try:
                # `in` is False for a ??? value: ask the keys.
                present = isinstance(value, DictConfig) and part in value.keys()
                if present and OmegaConf.is_missing(value, part):
                    raise ConfigError(f"{key} is missing (???): set it, e.g. {key}=VALUE")
                value = value.get(part, MISSING)
            except OmegaConfBaseException as error:
                message = (str(error).splitlines() or [""])[0]
                raise ConfigError(f"{key}: cannot be resolved ({type(error).__name__}: {message})") from None
        if value is MISSING:
            if default is not MISSING:
                return default
            raise ConfigError(f"{key_of(path, prefix)} is missing")
    return value


def has(node: Mapping, path: str) -> bool:
    """Whether ``path`` is present under ``node`` (without resolving its value)."""
    value: Any = node
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value.keys():
            return False
        value = value._get_node(part) if isinstance(value, DictConfig) else value[part]
    return True


def fail(path: str, value: Any, allowed: str, prefix: str = "") -> ConfigError:
    """The error ``<key>=<value>: <allowed>`` (to raise)."""
    return ConfigError(f"{key_of(path, prefix)}={value!r}: {allowed}")


def choice(node: Mapping, path: str, allowed: Sequence, prefix: str = "") -> Any:
    """A value that must be one of ``allowed``."""
    value = get(node, path, prefix)
    if isinstance(value, bool) or value not in allowed:
        raise fail(path, value, f"choose one of {', '.join(map(str, allowed))}", prefix)
    return value


def is_int(value: Any) -> bool:
    """An integer, booleans excluded (YAML's true is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def integer(node: Mapping, path: str, minimum: int = 1, maximum: int | None = None, prefix: str = "",
            optional: bool = False) -> int | None:
    """An integer in ``[minimum, maximum]`` (null too when ``optional``)."""
    value = get(node, path, prefix)
    if optional and value is None:
        return None
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        allowed = f"must be an integer >= {minimum}" if maximum is None else \
            f"must be an integer in [{minimum}, {maximum}]"
        raise fail(path, value, allowed + (" or null" if optional else ""), prefix)
    return value


def positive_int(node: Mapping, path: str, prefix: str = "") -> int:
    """An integer >= 1."""
    return integer(node, path, 1, prefix=prefix)


def is_number(value: Any) -> bool:
    """A finite int or float, booleans excluded."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(node: Mapping, path: str, low: float, high: float, low_open: bool = False, high_open: bool = False,
           prefix: str = "") -> float:
    """A finite number in the interval from ``low`` to ``high`` (open at the ends marked so)."""
    value = get(node, path, prefix)
    if not is_number(value) or not (low < value if low_open else low <= value) \
            or not (value < high if high_open else value <= high):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise fail(path, value, f"must be a finite number in {interval}", prefix)
    return float(value)


def boolean(node: Mapping, path: str, prefix: str = "") -> bool:
    """true or false."""
    value = get(node, path, prefix)
    if not isinstance(value, bool):
        raise fail(path, value, "must be true or false", prefix)
    return value


def string(node: Mapping, path: str, prefix: str = "", optional: bool = False) -> str | None:
    """A non-empty string (null too when ``optional``)."""
    value = get(node, path, prefix)
    if optional and value is None:
        return None
    if not isinstance(value, str) or not value:
        raise fail(path, value, "must be a non-empty string" + (" or null" if optional else ""), prefix)
    return value


def sequence(node: Mapping, path: str, prefix: str = "", non_empty: bool = True) -> list:
    """A list (non-empty unless told), as a plain list of its resolved items."""
    value = get(node, path, prefix)
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or (non_empty and not value):
        raise fail(path, value, "must be a non-empty list" if non_empty else "must be a list", prefix)
    return list(value)
