"""The run store under concurrent writers: every row lands whole, none is lost."""

import json
import multiprocessing as mp

from cmt.results.store import append_rows, read_jsonl, read_rows, write_jsonl


def _writer(path, worker, rows, width):
    for i in range(rows):
        append_rows(path, [{"worker": worker, "i": i, "pad": "x" * width}])


def test_parallel_appends_neither_tear_nor_lose_rows(tmp_path):
    path = tmp_path / "runs.jsonl"
    procs = [mp.get_context("fork").Process(target=_writer, args=(path, w, 50, 5000)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    rows = [json.loads(line) for line in lines]
    assert sorted((r["worker"], r["i"]) for r in rows) == [(w, i) for w in range(4) for i in range(50)]


def test_read_rows_skips_a_torn_tail_and_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    append_rows(path, [{"a": 1}, {"a": 2}])
    with path.open("a") as handle:
        handle.write('{"a": 3')
    assert read_rows(path) == [{"a": 1}, {"a": 2}]
    try:
        read_jsonl(path)
    except ValueError as error:
        assert f"{path}:3" in str(error)
    else:
        raise AssertionError("a malformed line must raise")


def test_write_jsonl_replaces_the_file_whole(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [{"x": 1}])
    write_jsonl(path, [{"x": 2}, {"x": 3}])
    assert read_jsonl(path) == [{"x": 2}, {"x": 3}]
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]
