"""Throughput of the OpenAI-compatible client and cost of the cache-hit path, against the local test server.

    python -m perf.teacher_client                      # 2000 questions, concurrency 32, no failures
    python -m perf.teacher_client --fail-rate 0.2      # with injected 429/500/slow/dropped responses

Starts ``python -m tools.openai_server --echo`` on a free loopback port and measures, on synthetic
questions with the default CoMT prompt:

- ``client``: requests/s of `cmt.teachers.openai.OpenAITeacher` alone (answers discarded);
- ``client + cache``: requests/s through `cmt.teachers.collect.collect`, every answer appended to the
  cache and fsync-ed (what ``stage=teach`` does on a first run);
- ``cache load`` and ``cache hit``: per question, opening the cache file, and answering a question from it
  (render the prompt, hash the key, look it up, decode the answer: what a rerun does per cached question).

The echo server answers instantly, so the numbers measure the client, the server's HTTP stack and the
disk, on whatever CPUs the machine shares between them; a real model server is slower than all of them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cmt.data.synthetic import load
from cmt.teachers.cache import ResponseCache
from cmt.teachers.collect import collect
from cmt.teachers.openai import OpenAITeacher
from cmt.teachers.prompts import build_request
from tools.openai_server import launch

PROMPTS = {"comt": "Solve this problem by describing the REASONING STEPS in natural language using only variable "
                   "names. Do NOT calculate any specific numbers.\n\nProblem: {question}"}


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one line per measurement."""
    parser = argparse.ArgumentParser(prog="python -m perf.teacher_client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="questions")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--fail-rate", type=float, default=0.0, help="injected failures (server side)")
    args = parser.parse_args(argv)
    server, base_url = launch(["--echo", "--fail-rate", str(args.fail_rate), "--slow-s", "1.0"])
    try:
        teacher = OpenAITeacher("bench", base_url, "echo", api_key_env=None, max_tokens=512, timeout_s=0.5,
                                concurrency=args.concurrency, backoff_s=0.05, backoff_max_s=0.5)
        fingerprint = teacher.fingerprint()
        questions = [p.question for p in load("train", args.n)]
        requests = list({r.key: r for r in (build_request(fingerprint, PROMPTS, "comt", f"{q} (#{i})", 1)
                                            for i, q in enumerate(questions))}.values())
        print(f"{len(requests)} requests, concurrency {args.concurrency}, injected failure rate {args.fail_rate}")
        started = time.perf_counter()
        failures = teacher.complete(requests, lambda request, result: None)
        elapsed = time.perf_counter() - started
        print(f"client:          {len(requests) / elapsed:8.0f} requests/s ({len(failures)} failed)")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "cache.jsonl"
            with ResponseCache(path) as cache:
                started = time.perf_counter()
                got = collect(teacher, requests, cache, progress=False)
                elapsed = time.perf_counter() - started
            print(f"client + cache:  {got.asked / elapsed:8.0f} requests/s ({len(got.failures)} failed)")
            started = time.perf_counter()
            cache = ResponseCache(path)
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            again = collect(teacher, [build_request(fingerprint, PROMPTS, "comt", f"{q} (#{i})", 1)
                                      for i, q in enumerate(questions)], cache, progress=False)
            hit_s = time.perf_counter() - started
            cache.close()
            if again.asked:
                raise RuntimeError(f"the rerun sent {again.asked} requests; every answer should be cached")
            print(f"cache load:      {1e6 * load_s / len(cache):8.1f} us per cached answer")
            print(f"cache hit:       {1e6 * hit_s / len(questions):8.1f} us per question (0 requests sent)")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
