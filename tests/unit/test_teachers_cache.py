"""The append-only answer cache: persistence and torn tails (a writer killed with SIGKILL:
tests/integration/test_teachers_cache.py)."""

import json

from cmt.teachers.cache import ResponseCache


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
