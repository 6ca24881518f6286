"""The answer cache across processes: a writer killed with SIGKILL (the rest: tests/unit/test_teachers_cache.py)."""

import signal
import subprocess
import sys
import time

from cmt.teachers.cache import ResponseCache

WRITER = """
import sys
from cmt.teachers.cache import ResponseCache
cache = ResponseCache(sys.argv[1])
i = 0
while True:
    cache.put(f"k{i}", {"texts": ["x" * 2000], "i": i}, id=f"q{i}")
    i += 1
"""


def test_a_writer_killed_with_sigkill_loses_no_complete_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    deadline = time.monotonic() + 60
    while (not path.exists() or path.stat().st_size < 200_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    size = path.stat().st_size
    assert size >= 200_000
    with ResponseCache(path) as cache:
        complete = path.read_bytes().count(b"\n")
        assert len(cache) == complete >= 90
        assert cache.dropped == size - path.stat().st_size
        # Lines are written in order: the keys held are exactly k0 .. k(n-1), each with its own value.
        assert all(cache.get(f"k{i}")["i"] == i for i in range(len(cache)))
