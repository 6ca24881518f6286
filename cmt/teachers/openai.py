"""A teacher behind any OpenAI-compatible chat-completions server (``vllm serve``, hosted APIs).

Requests go out with bounded concurrency: ``concurrency`` workers, each with its own keep-alive connection.
A request that meets a transient failure is retried with exponential backoff and full jitter, honouring
``Retry-After``: HTTP 408, 409, 429 and 5xx, timeouts, refused or dropped connections, a body cut short or
unreadable. A failure no retry can fix (401/403: the key; 404: the model or the URL) stops the run with a
one-line error that says what to change. 400 and 422 (this one prompt is too long, say) fail the request
alone; it is reported, not retried.

Why the retry loop is ours (a dozen lines in `OpenAITeacher._request`): the ``openai`` client (checked:
3.57) retries the same statuses but with fixed constants (0.5 s doubling to 8 s, 0-25 % jitter), so
``backoff_s``, ``backoff_max_s`` and ``seed`` could not be honoured and 32 workers hit by one 429 would retry
almost together instead of spread by full jitter; it gives up on a ``Retry-After`` over two minutes, does not
retry a 200 whose body is not a chat completion, is not a dependency of ``cmt``, and parses every response
into pydantic objects (more CPU per request). ``tenacity`` would replace
the loop's dozen lines with as many of decorator arguments and add a dependency.

The API key is read from the environment variable named by ``api_key_env`` when the teacher is used, and
only ever put in the ``Authorization`` header: it is not an attribute, is never logged, and error
messages name the variable, not its value.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Sequence
from typing import Any

import httpx

from cmt.teachers.chat import ChatRequest, ChatResult, OnResult, TeacherError

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 521, 522, 524, 529})
# Transient per-request failures; anything else (400, 413, 422 ...) fails just that request.
FATAL_STATUSES = frozenset({401, 403, 404})


class _Retry(Exception):
    """A transient failure of one attempt; ``delay`` is the server's Retry-After, when it gave one."""

    def __init__(self, reason: str, delay: float | None = None):
        super().__init__(reason)
        self.delay = delay


class _RequestFailed(Exception):
    """A permanent failure of one request (not of the teacher)."""


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random,
                  retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): full jitter over an exponential cap.

    Args:
        attempt: Retries already made for this request.
        base_s: The cap of the first retry; it doubles with each retry.
        max_s: The largest cap.
        rng: Source of the jitter.
        retry_after: The server's ``Retry-After`` in seconds; waited at least (up to ``max_s``).
    """
    delay = rng.uniform(0, min(max_s, base_s * 2 ** attempt))
    return max(delay, min(retry_after, max_s)) if retry_after is not None else delay


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def parse_completion(payload: dict[str, Any]) -> ChatResult:
    """The samples of a chat-completions response body, in choice order.

    Raises:
        ValueError: The body is not a chat completion.
    """
    try:
        choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
        texts = [c["message"].get("content") or "" for c in choices]
        reasons = [c.get("finish_reason") or "stop" for c in choices]
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not a chat completion ({type(error).__name__}: {error})") from error
    usage = payload.get("usage") or {}
    return ChatResult(texts, reasons, usage.get("completion_tokens"))


class OpenAITeacher:
    """A chat teacher that talks to an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        name: Names the training-set folder and result rows.
        base_url: The API root, ending in ``/v1`` (``http://127.0.0.1:8000/v1``).
        model: The model name the server knows (``meta-llama/Llama-3.1-70B-Instruct``).
        api_key_env: The environment variable holding the API key (None: send no key).
        temperature, top_p, max_tokens: Sampling parameters sent with every request.
        timeout_s: Seconds a request may take (read, write and pool); ``connect_timeout_s`` to connect.
        concurrency: Requests in flight at once.
        max_retries: Retries of one request before it counts as failed.
        backoff_s, backoff_max_s: First and largest backoff caps (see :func:`backoff_delay`).
        extra_body: Further fields sent with every request (``{"seed": 0}``, ``{"stop": [...]}``).
        seed: Seeds the backoff jitter.
    """

    def __init__(self, name: str, base_url: str, model: str, api_key_env: str | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, max_tokens: int = 512, timeout_s: float = 120.0,
                 connect_timeout_s: float = 10.0, concurrency: int = 32, max_retries: int = 8,
                 backoff_s: float = 1.0, backoff_max_s: float = 60.0, extra_body: dict[str, Any] | None = None,
                 seed: int = 0):
        if not model:
            raise TeacherError("teacher.model is empty; set it to the model name the server serves "
                               "(`curl BASE_URL/models` lists them)")
        if concurrency < 1:
            raise TeacherError(f"teacher.concurrency={concurrency} must be at least 1")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env or None
        self.sampling = {"temperature": float(temperature), "top_p": float(top_p), "max_tokens": int(max_tokens),
                         **dict(extra_body or {})}
        self.timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self.concurrency = int(concurrency)
        self.max_retries = int(max_retries)
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        self._rng = random.Random(seed)

    def fingerprint(self) -> dict[str, Any]:
        """Model and sampling parameters (not the URL, key or concurrency: they do not change answers)."""
        return {"model": self.model, **self.sampling}

    def _headers(self) -> dict[str, str]:
        """Request headers, with the key from the environment.

        Raises:
            TeacherError: ``api_key_env`` names a variable that is not set.
        """
        if self.api_key_env is None:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise TeacherError(
                f"the environment variable {self.api_key_env} (teacher.api_key_env) is not set; export it with "
                f"the server's API key, or set teacher.api_key_env=null for a server without a key")
        return {"Authorization": f"Bearer {key}"}

    def _fatal(self, response: httpx.Response) -> TeacherError:
        """The one-line error for a status no retry can fix."""
        if response.status_code in (401, 403):
            where = f"the key in ${self.api_key_env}" if self.api_key_env else "no API key (teacher.api_key_env=null)"
            return TeacherError(f"the server at {self.base_url} refused {where} (HTTP {response.status_code}); "
                                "set the variable to a key the server accepts")
        return TeacherError(
            f"{response.request.url} answered HTTP 404 for model {self.model!r}: check teacher.base_url (the API "
            f"root, usually ending in /v1) and teacher.model (GET {self.base_url}/models lists the served models)")

    def check(self) -> None:
        """Ask the server for its models: reachable, key accepted, ``model`` served.

        Raises:
            TeacherError: With the setting to fix.
        """
        headers = self._headers()
        try:
            response = httpx.get(f"{self.base_url}/models", headers=headers, timeout=self.timeout)
        except httpx.HTTPError as error:
            raise TeacherError(
                f"cannot reach the teacher server at {self.base_url} ({type(error).__name__}); start it (see "
                "docs/teachers.md) or point teacher.base_url at it") from None
        if response.status_code in FATAL_STATUSES:
            raise self._fatal(response)
        if response.status_code != 200:
            return  # Some servers do not list models; the first request will tell.
        try:
            served = [m["id"] for m in response.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if served and self.model not in served:
            raise TeacherError(f"the server at {self.base_url} serves {', '.join(served)}, not teacher.model="
                               f"{self.model}; set teacher.model to one of them")

    def complete(self, requests: Sequence[ChatRequest], on_result: OnResult) -> dict[str, str]:
        """Answer ``requests`` (see `cmt.teachers.chat.ChatTeacher.complete`)."""
        if not requests:
            return {}
        return asyncio.run(self._complete(requests, on_result, self._headers()))

    async def _complete(self, requests: Sequence[ChatRequest], on_result: OnResult,
                        headers: dict[str, str]) -> dict[str, str]:
        failures: dict[str, str] = {}
        pending = iter(requests)
        # One client with one keep-alive connection per worker: a shared httpx pool costs more CPU per request
        # the more connections it holds (2-3x at 32-64 on the benchmark), and the workers bound concurrency.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

        async def worker() -> None:
            async with httpx.AsyncClient(timeout=self.timeout, limits=limits, headers=headers) as client:
                for request in pending:
                    try:
                        result = await self._request(client, request)
                    except _RequestFailed as error:
                        failures[request.key] = str(error)
                    else:
                        on_result(request, result)

        workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(requests)))]
        try:
            await asyncio.gather(*workers)  # raises the first TeacherError at once
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return failures

    async def _request(self, client: httpx.AsyncClient, request: ChatRequest) -> ChatResult:
        """One request with its retries.

        Raises:
            _RequestFailed: Retries exhausted, or a status that fails this request only.
            TeacherError: A status that fails every request (401, 403, 404).
        """
        body = {"model": self.model, "messages": request.messages, "n": request.n, **self.sampling}
        attempt = 0
        while True:
            try:
                return await self._attempt(client, body)
            except _Retry as retry:
                if attempt >= self.max_retries:
                    raise _RequestFailed(f"{retry} (after {attempt + 1} attempts)") from None
                await asyncio.sleep(backoff_delay(attempt, self.backoff_s, self.backoff_max_s, self._rng, retry.delay))
                attempt += 1

    async def _attempt(self, client: httpx.AsyncClient, body: dict[str, Any]) -> ChatResult:
        try:
            response = await client.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.TransportError as error:  # timeouts, refused or dropped connections, cut bodies
            raise _Retry(type(error).__name__) from None
        if response.status_code == 200:
            try:
                return parse_completion(response.json())
            except ValueError as error:
                raise _Retry(f"unreadable response ({error})") from None
        if response.status_code in FATAL_STATUSES:
            raise self._fatal(response)
        if response.status_code in RETRY_STATUSES:
            raise _Retry(f"HTTP {response.status_code}", _retry_after(response))
        raise _RequestFailed(self._redact(f"HTTP {response.status_code}: {response.text[:200]}"))

    def _redact(self, text: str) -> str:
        """``text`` with the API key blanked (a server may quote the request in its error body)."""
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return text.replace(key, "***") if key else text
