"""A small OpenAI-compatible chat-completions server: a local model (or an echo) behind ``/v1``.

    python -m tools.openai_server --model PATH --port 8000      # a transformers model folder or bundled:tiny
    python -m tools.openai_server --echo --port 0               # no model: answers repeat the prompt

Run it from the repository root (``tools`` is a folder of the clone, not part of the installed ``cmt``
package: a development and test tool).

It serves ``GET /v1/models``, ``POST /v1/chat/completions`` (``n``, ``max_tokens``, ``temperature``) and
``GET /stats``, with the standard library's threading HTTP server (HTTP/1.1, keep-alive). The model
answers one request at a time; this is a development and test tool, not vLLM. Port 0 picks a free port;
the first line printed is ``serving MODEL at http://HOST:PORT/v1``.

Test-only options inject failures (``--fail-rate``, ``--fail-modes``): a request fails with that
probability, in one of the modes: HTTP 429, HTTP 500, a slow answer (``--slow-s`` seconds, then no
answer if the client has hung up), or a connection dropped in the middle of the response body.

``GET /stats`` counts *successful responses* per prompt (the last user message): a response counts
once it was written in full to a client still connected. Echo mode repeats the prompt word by word up to
``max_tokens`` words, so a load test with it exercises the client, the cache and the filters, not a model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FAIL_MODES = ("429", "500", "slow", "drop")
# The repository root: put on the server subprocess's path so that ``-m tools.openai_server`` is found
# wherever the caller's working directory is.
ROOT = Path(__file__).resolve().parents[1]


class EchoBackend:
    """Answers with the last user message, cut to ``max_tokens`` words (finish reason ``length`` then)."""

    name = "echo"

    def complete(self, messages: list[dict[str, str]], n: int, max_tokens: int,
                 temperature: float) -> list[tuple[str, str, int]]:
        words = messages[-1]["content"].split(" ")
        cut = len(words) > max_tokens
        text = " ".join(words[:max_tokens])
        return [(text, "length" if cut else "stop", min(len(words), max_tokens))] * n


class ModelBackend:
    """Answers with a local model (`cmt.teachers.hf.HFTeacher`), one request at a time."""

    def __init__(self, model: str, name: str | None, dtype: str, device: str):
        from cmt.teachers.hf import HFTeacher

        source = {"source": model} if model.startswith("bundled:") else {"path": model}
        self.teacher = HFTeacher(dtype=dtype, device=device, **source)
        self.teacher.check()
        self.name = name or os.path.basename(model.rstrip("/")).removeprefix("bundled:")
        self._lock = threading.Lock()

    def complete(self, messages: list[dict[str, str]], n: int, max_tokens: int,
                 temperature: float) -> list[tuple[str, str, int]]:
        prompt = self.teacher.prompt(messages)
        with self._lock:
            return self.teacher.generate([prompt] * n, max_tokens, temperature)


class Faults:
    """Test-only failure injection: which mode (if any) the next request fails in, drawn under a lock."""

    def __init__(self, rate: float, modes: list[str], slow_s: float, seed: int):
        if unknown := [m for m in modes if m not in FAIL_MODES]:
            raise SystemExit(f"unknown --fail-modes {unknown}; choose from {', '.join(FAIL_MODES)}")
        self.rate, self.modes, self.slow_s = rate, modes, slow_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        with self._lock:
            if self.rate <= 0 or self._rng.random() >= self.rate:
                return None
            return self._rng.choice(self.modes)


class Server(ThreadingHTTPServer):
    """The HTTP server and its state: backend, API key, faults, counters."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], backend: Any, api_key: str | None, faults: Faults,
                 delay_s: float, verbose: bool):
        super().__init__(address, Handler)
        self.backend, self.api_key, self.faults = backend, api_key, faults
        self.delay_s, self.verbose = delay_s, verbose
        self.lock = threading.Lock()
        self.served: Counter[str] = Counter()
        self.events: Counter[str] = Counter()

    def count(self, event: str, prompt: str | None = None) -> None:
        with self.lock:
            self.events[event] += 1
            if prompt is not None:
                self.served[prompt] += 1


class Handler(BaseHTTPRequestHandler):
    """One connection: routes, auth, fault injection, JSON responses."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the client's
    # delayed ACK hold every response back by ~40 ms.
    disable_nagle_algorithm = True
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        if self.server.verbose:
            super().log_message(format, *args)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None,
                   cut: bool = False) -> bool:
        """Write a JSON response (``cut``: only half the body, then hang up). Returns whether it was whole."""
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body[:len(body) // 2] if cut else body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return False
        if cut:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return not cut

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"error": {"message": message, "type": HTTPStatus(status).phrase, "code": status}},
                        headers)

    def _authorized(self) -> bool:
        if self.server.api_key is None or self.headers.get("Authorization") == f"Bearer {self.server.api_key}":
            return True
        self.server.count("unauthorized")
        self._error(401, "invalid API key")
        return False

    def _client_gone(self) -> bool:
        """Whether the client closed the connection (readable with nothing to read)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def do_GET(self) -> None:  # the name http.server calls
        if self.path.rstrip("/") == "/stats":
            with self.server.lock:
                stats = {"served": dict(self.server.served), "events": dict(self.server.events)}
            self._send_json(200, stats)
        elif self.path.rstrip("/") == "/v1/models":
            if self._authorized():
                self._send_json(200, {"object": "list", "data": [
                    {"id": self.server.backend.name, "object": "model", "owned_by": "cmt"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        if not self._authorized():
            return
        try:
            body = json.loads(raw)
            messages, model = body["messages"], body["model"]
            n, max_tokens = int(body.get("n", 1)), int(body.get("max_tokens") or 256)
            temperature = float(body.get("temperature", 1.0))
        except (ValueError, KeyError, TypeError) as error:
            self.server.count("bad_request")
            self._error(400, f"bad request body ({type(error).__name__}: {error})")
            return
        if model != self.server.backend.name:
            self.server.count("unknown_model")
            self._error(404, f"the model `{model}` does not exist")
            return
        self._answer(messages, model, n, max_tokens, temperature)

    def _answer(self, messages: list[dict[str, str]], model: str, n: int, max_tokens: int,
                temperature: float) -> None:
        fault = self.server.faults.draw()
        self.server.count("requests")
        if fault is not None:
            self.server.count(f"fault_{fault}")
        if fault == "429":
            self._error(429, "rate limited (injected)", {"Retry-After": "0"})
            return
        if fault == "500":
            self._error(500, "internal error (injected)")
            return
        if fault == "slow":
            time.sleep(self.server.faults.slow_s)
            if self._client_gone():
                self.close_connection = True
                return
        elif self.server.delay_s:
            time.sleep(self.server.delay_s)
        outputs = self.server.backend.complete(messages, n, max_tokens, temperature)
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
                        for i, (text, reason, _) in enumerate(outputs)],
            "usage": {"prompt_tokens": 0, "completion_tokens": sum(k for _, _, k in outputs),
                      "total_tokens": sum(k for _, _, k in outputs)},
        }
        if self._send_json(200, payload, cut=fault == "drop"):
            self.server.count("served", messages[-1]["content"])


def launch(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start this server in a subprocess on a free loopback port (for benchmarks and tests).

    Args:
        args: Command-line options (``["--echo"]``, ``["--model", PATH]`` ...), without ``--port``.
        env: The subprocess environment (None: this one's); the repository root is added to its PYTHONPATH.

    Returns:
        The process (stop it with ``terminate``) and its API root, ``http://127.0.0.1:PORT/v1``.

    Raises:
        RuntimeError: The server exited before serving, with its error output.
    """
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: nobody reads it while the server runs
    process = subprocess.Popen([sys.executable, "-m", "tools.openai_server", *args, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
    line = process.stdout.readline()
    if not line.startswith("serving"):
        process.kill()
        process.wait()
        errors.seek(0)
        raise RuntimeError(f"the server did not start: {errors.read()[-2000:]}")
    return process, line.split(" at ", 1)[1].strip()


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m tools.openai_server``."""
    parser = argparse.ArgumentParser(prog="python -m tools.openai_server", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a transformers model folder, or bundled:NAME (cmt/assets/NAME)")
    source.add_argument("--echo", action="store_true", help="no model: answer with the prompt (load tests)")
    parser.add_argument("--served-model-name", help="the model name clients ask for (default: folder name, or echo)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on start)")
    parser.add_argument("--api-key-env", help="require the key held by this environment variable")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--delay-s", type=float, default=0.0, help="added latency of every answer")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    tests = parser.add_argument_group("failure injection (test only)")
    tests.add_argument("--fail-rate", type=float, default=0.0, help="probability that a request fails")
    tests.add_argument("--fail-modes", default=",".join(FAIL_MODES), help=f"comma-separated: {', '.join(FAIL_MODES)}")
    tests.add_argument("--slow-s", type=float, default=5.0, help="how long a slow answer takes")
    tests.add_argument("--seed", type=int, default=0, help="seeds the failure draws")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Start the server and serve until interrupted."""
    args = build_parser().parse_args(argv)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise SystemExit(f"--api-key-env {args.api_key_env}: that environment variable is not set")
    backend = EchoBackend() if args.echo else ModelBackend(args.model, args.served_model_name, args.dtype, args.device)
    if args.echo and args.served_model_name:
        backend.name = args.served_model_name
    faults = Faults(args.fail_rate, [m for m in args.fail_modes.split(",") if m], args.slow_s, args.seed)
    server = Server((args.host, args.port), backend, api_key, faults, args.delay_s, args.verbose)
    host, port = server.server_address[:2]
    print(f"serving {backend.name} at http://{host}:{port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
