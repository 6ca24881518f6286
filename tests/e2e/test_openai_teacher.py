"""``python run.py stage=teach teacher=openai`` against the real test server on 127.0.0.1, through the real CLI.

The load test uses the server's echo mode: it exercises the client (concurrency, retries, the cache, the
filters, resume), not a model; `tests/integration/test_teachers_hf.py` serves the tiny model through the same server.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest

from cmt.data.suite import train_problems
from cmt.teachers.filters import REASONS
from cmt.teachers.prompts import render_messages
from tests.conftest import ROOT, default_sigint

pytestmark = pytest.mark.slow

KEY = "sk-e2e-secret-7f3a9c1d5e"


@pytest.fixture
def server(echo_server):
    """``start(*args) -> base_url``: echo servers that require ``$TEACHER_KEY``."""
    return lambda *args: echo_server("--api-key-env", "TEACHER_KEY", *args, env={**os.environ, "TEACHER_KEY": KEY})


def command(tmp_path, base_url, n, *overrides):
    """The teach command; its 1.5 s timeout cuts the server's 3 s slow answers and leaves room for an ordinary
    answer on a loaded machine (at 0.5 s a slow ordinary answer was retried and served twice)."""
    return [sys.executable, "run.py", "stage=teach", "teacher=openai", f"teacher.base_url={base_url}",
            "teacher.model=echo", "teacher.api_key_env=TEACHER_KEY", "teacher.timeout_s=1.5", "teacher.backoff_s=0.05",
            "teacher.backoff_max_s=0.5", "teacher.max_retries=20", f"teach.n={n}", "logger=csv",
            f"paths.artifacts={tmp_path}/artifacts", f"paths.results={tmp_path}/results",
            f"hydra.run.dir={tmp_path}/job", *overrides]


def environment():
    return {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "TEACHER_KEY": KEY}


def served(base_url):
    return httpx.get(base_url.removesuffix("/v1") + "/stats").json()["served"]


def prompts_by_id(cfg, n):
    """``{(id, kind): user prompt}``: what the server counts, for the first ``n`` training questions."""
    return {(p.id, kind): render_messages(cfg.teach.prompts, kind, p.question)[-1]["content"]
            for p in train_problems(cfg.benchmark, n) for kind in ("comt", "cot")}


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def data_folder(tmp_path):
    return tmp_path / "artifacts" / "default" / "data" / "synthetic" / "openai" / "seed0"


def test_500_questions_with_20_percent_failures_are_each_answered_once_and_the_key_is_written_nowhere(
        tmp_path, server, cfg_factory):
    base_url = server("--fail-rate", "0.2", "--slow-s", "3.0", "--seed", "1")
    out = subprocess.run(command(tmp_path, base_url, 500), cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=environment())
    assert out.returncode == 0, out.stderr[-3000:]
    prompts = prompts_by_id(cfg_factory(["stage=teach"]), 500)
    counts = served(base_url)
    assert set(counts) == set(prompts.values()) and set(counts.values()) == {1}
    report = json.loads((data_folder(tmp_path) / "report.json").read_text())
    assert report["failed_requests"] == 0 and report["requests"] == len(counts)
    for kind in ("comt", "cot"):
        assert sum(report[kind][k] for k in ("kept", *REASONS)) == 500
        lines = read_lines(data_folder(tmp_path) / f"{kind}.jsonl")
        assert len(lines) == report[kind]["kept"] and len({line["id"] for line in lines}) == len(lines)
    assert "teach summary" in out.stdout and "CoMT/CoT mean target length" in out.stdout
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 6
    assert [p for p in written if KEY.encode() in p.read_bytes()] == []
    assert KEY not in out.stdout + out.stderr


def interrupt(args, cache, lines, sig):
    """Start ``args``, send ``sig`` once the cache holds ``lines`` answers; returns the process's output."""
    run = subprocess.Popen(args, cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           preexec_fn=default_sigint, text=True)
    deadline = time.monotonic() + 300
    while (not cache.exists() or cache.read_bytes().count(b"\n") < lines) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(run.pid, sig)
    output = run.communicate(timeout=60)[0]
    assert run.returncode != 0
    return output


def test_ctrl_c_then_sigkill_then_rerun_repeats_no_cached_request_and_loses_no_line(tmp_path, server, cfg_factory):
    base_url = server("--delay-s", "0.05")
    n, concurrency = 200, 4
    args = command(tmp_path, base_url, n, f"teacher.concurrency={concurrency}", "teach.progress=false")
    cache = tmp_path / "artifacts" / "teacher_cache" / "echo.jsonl"
    output = interrupt(args, cache, 40, signal.SIGINT)
    assert "interrupted; " in output and "rerun the same command to resume" in output
    interrupt(args, cache, 150, signal.SIGKILL)
    held = {(line["id"], line["kind"]) for line in read_lines(cache)}
    assert 150 <= len(held) < 2 * n
    with cache.open("a") as handle:  # the torn line a kill in the middle of a write would leave
        handle.write('{"key": "torn", "id": "x", "val')
    before = served(base_url)

    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=environment())
    assert out.returncode == 0, out.stderr[-3000:]
    assert "dropped a torn last line" in out.stdout
    prompts = prompts_by_id(cfg_factory(["stage=teach"]), n)
    after = served(base_url)
    # No request for an answer the cache held; each prompt answered once, bar the few in flight at the two stops.
    assert all(after[prompts[pair]] == before[prompts[pair]] for pair in held)
    assert set(after) == set(prompts.values())
    assert sum(after.values()) - len(after) <= 2 * concurrency
    # The cache holds each prompt exactly once; the outputs hold each question at most once, all accounted for.
    keys = Counter(line["key"] for line in read_lines(cache))
    assert len(keys) == len(set(prompts.values())) and set(keys.values()) == {1}
    report = json.loads((data_folder(tmp_path) / "report.json").read_text())
    assert report["requests"] == len(keys) - len(held) and report["cache_hits"] == len(held)
    for kind in ("comt", "cot"):
        lines = read_lines(data_folder(tmp_path) / f"{kind}.jsonl")
        assert len({line["id"] for line in lines}) == len(lines) == report[kind]["kept"]
        assert sum(report[kind][k] for k in ("kept", *REASONS)) == n
