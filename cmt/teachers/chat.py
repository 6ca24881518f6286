"""What a chat teacher is: it answers chat prompts, n samples each, and reports each answer as it arrives.

Answers are reported one request at a time through a callback, so the caller can write each one to disk
the moment it exists (a crash loses nothing received), and the teacher never holds all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cmt.errors import CmtError

Messages = list[dict[str, str]]


class TeacherError(CmtError, RuntimeError):
    """The teacher cannot work as configured (server unreachable, key rejected, model unknown ...).

    The message is one line that names what is wrong and how to fix it; it never contains a secret.
    """


@dataclass(frozen=True)
class ChatRequest:
    """One prompt to answer.

    Attributes:
        key: The cache key (content address) of this prompt for this teacher.
        messages: The chat, OpenAI style: ``[{"role": "user", "content": ...}]``.
        n: Samples wanted.
    """

    key: str
    messages: Messages
    n: int = 1


@dataclass(frozen=True)
class ChatResult:
    """The teacher's answer to one request.

    Attributes:
        texts: The samples received (at most the ``n`` asked for).
        finish_reasons: Per sample, ``stop`` (ended by the model) or ``length`` (cut at the token limit).
        completion_tokens: Tokens the teacher generated for all samples together (None: not reported).
    """

    texts: list[str]
    finish_reasons: list[str]
    completion_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (the cache's value)."""
        return {"texts": self.texts, "finish_reasons": self.finish_reasons,
                "completion_tokens": self.completion_tokens}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChatResult:
        """Inverse of :meth:`to_json`."""
        return cls(list(data["texts"]), list(data["finish_reasons"]), data.get("completion_tokens"))


OnResult = Callable[[ChatRequest, ChatResult], None]


@runtime_checkable
class ChatTeacher(Protocol):
    """An LLM that answers chat prompts (see the module docstring).

    Attributes:
        name: Names the training-set folder and the result rows.
    """

    name: str

    def fingerprint(self) -> dict[str, Any]:
        """What decides the answers (model and sampling parameters; not where it runs): part of the cache key."""

    def check(self) -> None:
        """Fail fast, before any heavy work, if the teacher cannot answer (raises :class:`TeacherError`)."""

    def complete(self, requests: Sequence[ChatRequest], on_result: OnResult) -> dict[str, str]:
        """Answer every request, calling ``on_result`` once per answered request, in the caller's thread.

        Returns:
            ``{request key: why it failed}`` for the requests that got no answer (retries exhausted).

        Raises:
            TeacherError: An error no retry can fix (bad key, unknown model); answers so far were reported.
        """
