"""The run store: one JSON line per (run, benchmark, split), appended atomically.

Many jobs of a multirun may finish at the same moment, so each append takes an exclusive ``flock`` on
the file and writes the whole payload with one ``write`` on an ``O_APPEND`` descriptor: rows are never
interleaved or torn, and rows already written are never rewritten.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cmt.atomic import atomic_write

# The columns of a result row (what each holds: README, Concepts, "Results store"); tables and plots read
# these, and rows rebuilt from W&B (wandb_report.py) carry every one of them.
ROW_FIELDS = (
    "run_id", "experiment", "sweep", "model", "teacher", "method", "stage", "benchmark", "split", "n",
    "accuracy", "accuracy_strict", "extraction_fail_rate", "ece", "brier", "overconfident_error_rate",
    "mean_output_tokens", "train_time_s", "train_tokens", "seed", "git_sha", "config_hash", "created_at",
)


def append_rows(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> None:
    """Append ``rows`` as JSON lines to ``path`` in one locked write (creating folders as needed)."""
    if not rows:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(row, sort_keys=False, default=str) + "\n" for row in rows).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a store (an absent store has none); a torn last line, if any, is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Write ``records`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record, default=str) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON lines file, naming the file and line of any malformed record."""
    records = []
    with Path(path).open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg}); fix or delete that line") from error
    return records
