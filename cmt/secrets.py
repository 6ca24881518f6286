"""Keep secrets out of everything a run writes: saved configs, logs, result rows and W&B.

Configs name the environment variable that holds a key (``api_key_env: OPENAI_API_KEY``), never the key.
As a second line of defence, anything written from a config passes through :func:`redact_config`, which
blanks values under secret-looking keys and any string equal to a secret-looking environment variable.
"""

from __future__ import annotations

import os
import re
from typing import Any

# Names whose value is a secret: they end in a key, token, secret or password word (HF_TOKEN, api_key,
# WANDB_API_KEY), unlike counts (max_new_tokens), tokenizers, or the name of a variable (api_key_env).
SECRET_NAME = re.compile(r"(api[_-]?key|access[_-]?key|secret([_-]?key)?|token|password|passwd|credentials?)$",
                         re.IGNORECASE)
REDACTED = "***"


def _is_secret_key(key: str) -> bool:
    return bool(SECRET_NAME.search(key))


def secret_values() -> set[str]:
    """Values of environment variables whose names look secret (at least 8 characters long)."""
    return {value for name, value in os.environ.items() if _is_secret_key(name) and len(value) >= 8}


def redact_text(text: str, secrets: set[str] | None = None) -> str:
    """``text`` with every secret environment value replaced by ``***``."""
    for secret in secrets if secrets is not None else secret_values():
        text = text.replace(secret, REDACTED)
    return text


def redact_config(node: Any, secrets: set[str] | None = None) -> Any:
    """A copy of a plain (container) config with secret-looking keys and secret values blanked."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(node, dict):
        return {k: REDACTED if _is_secret_key(str(k)) and node[k] not in (None, "") else redact_config(node[k], secrets)
                for k in node}
    if isinstance(node, (list, tuple)):
        return [redact_config(v, secrets) for v in node]
    if isinstance(node, str):
        return redact_text(node, secrets)
    return node
