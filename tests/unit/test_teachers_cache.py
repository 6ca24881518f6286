"""The append-only answer cache: persistence, torn tails, and a writer killed with SIGKILL."""

import json
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


def test_values_survive_reopening_and_the_last_put_of_a_key_wins(tmp_path):
    path = tmp_path / "sub" / "cache.jsonl"
    with ResponseCache(path) as cache:
        cache.put("a", {"texts": ["one"]}, id="q1", kind="comt")
        cache.put("b", [1, 2])
        cache.put("a", {"texts": ["two"]})
        assert len(cache) == 2 and "a" in cache and cache.get("zzz") is None
    reopened = ResponseCache(path)
    assert reopened.get("a") == {"texts": ["two"]} and reopened.get("b") == [1, 2] and reopened.dropped == 0
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"key": "a", "id": "q1", "kind": "comt", "value": {"texts": ["one"]}}
    reopened.close()


def test_a_torn_last_line_is_dropped_and_the_next_put_starts_a_fresh_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    with ResponseCache(path) as cache:
        cache.put("a", 1)
    with path.open("a") as handle:
        handle.write('{"key": "b", "val')
    with ResponseCache(path) as cache:
        assert cache.dropped == len('{"key": "b", "val') and "b" not in cache
        cache.put("c", 3)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "c"]
    with ResponseCache(path) as cache:
        assert (cache.get("a"), cache.get("c"), cache.dropped) == (1, 3, 0)


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
