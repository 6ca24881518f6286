"""The teacher's prompts (``teach.prompts``): an instruction per trace kind around the question.

The CoMT instruction defaults to the paper's wording ("describe the REASONING STEPS in natural language
using only variable names. Do NOT calculate any specific numbers."); the CoT instruction asks for the
worked solution of the baseline. A benchmark with tables (TabMWP) renders the table into ``question``.

Every answer is cached under a content address: the teacher's fingerprint (model and sampling
parameters), the rendered chat (template and question) and the number of samples. Changing any of them
asks again; changing nothing never does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cmt.teachers import KINDS
from cmt.teachers.chat import ChatRequest, Messages


def _check_kind(prompts: Mapping[str, Any], kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown trace kind {kind!r}; choose one of {', '.join(KINDS)}")
    template = prompts.get(kind)
    if not template or "{question}" not in template:
        raise ValueError(f"teach.prompts.{kind} must be a template with a {{question}} field, got {template!r}")
    return str(template)


def render_messages(prompts: Mapping[str, Any], kind: str, question: str) -> Messages:
    """The chat sent to the teacher for one question.

    Args:
        prompts: The ``teach.prompts`` node: ``system`` (optional) and one ``str.format`` template per kind.
        kind: ``comt`` or ``cot``.
        question: The problem text (tables already rendered in).

    Raises:
        ValueError: Unknown kind, or a template without a ``{question}`` field.
    """
    template = _check_kind(prompts, kind)
    messages = [{"role": "system", "content": str(prompts["system"])}] if prompts.get("system") else []
    messages.append({"role": "user", "content": template.format(question=question)})
    return messages


def prompt_hash(prompts: Mapping[str, Any], kind: str) -> str:
    """A short hash of the prompt template of ``kind`` (system and user), saved with every trace it made."""
    template = _check_kind(prompts, kind)
    return _digest({"system": prompts.get("system"), "template": template})[:12]


def cache_key(fingerprint: Mapping[str, Any], messages: Messages, n: int) -> str:
    """The content address of one request: teacher fingerprint, rendered chat and sample count."""
    return _digest({"teacher": dict(fingerprint), "messages": messages, "n": int(n)})


def build_request(fingerprint: Mapping[str, Any], prompts: Mapping[str, Any], kind: str, question: str,
                  n: int) -> ChatRequest:
    """The request for one question: rendered chat plus its cache key."""
    messages = render_messages(prompts, kind, question)
    return ChatRequest(cache_key(fingerprint, messages, n), messages, n)


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
