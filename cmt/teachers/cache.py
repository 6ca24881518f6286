"""The teacher's answers on disk: an append-only JSON-lines file, one line per answer, keyed by content.

Why this shape: a rerun after a crash, Ctrl-C or SIGKILL must resume where the last run stopped, ask for
nothing twice and lose nothing received. So each answer is appended the moment it arrives, with one
``write`` on an ``O_APPEND`` descriptor under an exclusive ``flock`` (two runs sharing a cache never
interleave lines): once ``put`` returns, the kernel holds the line and a killed process cannot lose it.
A background thread then ``fsync``-s (group commit: one ``fsync`` covers every line written while the
previous one ran), so a power cut loses at most the answers of the last few milliseconds, and a slow
disk does not stall the requests in flight; `close` waits for the last ``fsync``. A process killed in the
middle of a write leaves at most one torn last line: opening the cache drops it (and only it), so the
next append starts on a fresh line.

Each line is ``{"key": ..., "value": ..., **meta}``: the key is a content address
(`cmt.teachers.prompts.cache_key`), the value the answer, and ``meta`` (question id, kind) is there for a
human reading the file. A key written twice (two runs raced) keeps its last value.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any


class ResponseCache:
    """A persistent ``key -> value`` map of JSON values, loaded into memory on open.

    Args:
        path: The JSON-lines file (created with its folders when absent).

    Attributes:
        dropped: Bytes of a torn last line removed on open (0 for a clean file).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._values: dict[str, Any] = {}
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self.dropped = self._load()
        self._closed = False
        self._dirty = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, name="cache-fsync", daemon=True)
        self._syncer.start()

    def _sync_loop(self) -> None:
        """fsync whenever lines were written since the last fsync, until closed."""
        while not self._closed:
            self._dirty.wait()
            self._dirty.clear()
            os.fsync(self._fd)

    def _load(self) -> int:
        """Read every complete line; cut a torn tail. Returns the bytes cut."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            data = self.path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                os.truncate(self.path, end)
                os.fsync(self._fd)
            for line in data[:end].splitlines():
                try:
                    record = json.loads(line)
                    self._values[record["key"]] = record["value"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
            return len(data) - end
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def get(self, key: str) -> Any | None:
        """The value stored under ``key`` (None when absent)."""
        return self._values.get(key)

    def put(self, key: str, value: Any, **meta: Any) -> None:
        """Store ``value`` under ``key``: written to the file before this returns, fsync-ed soon after.

        Args:
            key: The content address.
            value: Any JSON-serialisable value.
            meta: Extra fields written on the line for readers of the file (never read back).
        """
        payload = (json.dumps({"key": key, **meta, "value": value}, ensure_ascii=False) + "\n").encode()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(self._fd, view):]
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._values[key] = value
        self._dirty.set()

    def close(self) -> None:
        """fsync what is left and release the file (the cache stays readable in memory)."""
        if self._closed:
            return
        self._closed = True
        self._dirty.set()
        self._syncer.join()
        os.fsync(self._fd)
        os.close(self._fd)

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
