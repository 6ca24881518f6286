"""The OpenAI-compatible teacher against a real ``vllm serve`` on 127.0.0.1: answers, cache, faults, secrets.

`tests/integration/test_teachers_openai.py` and `tests/e2e/test_openai_teacher.py` run the same client against our
echo server, whose failure injection reaches cases a real server rarely shows; here the server is vLLM's
own, serving a real model, so what is tested is what users run: its status codes and error bodies, its
chat template, its sampling and its key check.
"""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import torch

from cmt.generation import sample
from cmt.models import load_tokenizer
from cmt.teachers.chat import ChatRequest, TeacherError
from cmt.teachers.openai import OpenAITeacher
from tests.conftest import ROOT
from tests.vllm_suite.conftest import SERVER_KEY, vllm_environment

pytestmark = pytest.mark.slow

QUESTIONS = ["Mia has 12 apples. She buys 5 bags with 3 apples in each. How many apples does Mia have now?",
             "A shop sells 7 pens a day for 4 days. How many pens does it sell?",
             "Leo had 30 stickers and gave 9 away. How many are left?"]


@pytest.fixture
def with_key(monkeypatch):
    monkeypatch.setenv("TEACHER_KEY", SERVER_KEY)


def teacher(server, **overrides):
    settings = {"api_key_env": "TEACHER_KEY", "max_tokens": 24, "timeout_s": 60.0, "backoff_s": 0.1,
                "backoff_max_s": 0.5, "concurrency": 4, **overrides}
    return OpenAITeacher("vllm", server.base_url, server.model, **settings)


def requests(questions, n=1):
    return [ChatRequest(f"key{i}", [{"role": "user", "content": q}], n) for i, q in enumerate(questions)]


def answer(client, questions, n=1):
    answers = {}
    failures = client.complete(requests(questions, n), lambda r, res: answers.setdefault(r.key, res))
    return answers, failures


def test_greedy_answers_equal_transformers_greedy_decoding_of_the_same_chat_prompt(vllm_server, with_key):
    answers, failures = answer(teacher(vllm_server), QUESTIONS)
    assert failures == {} and len(answers) == len(QUESTIONS)
    tokenizer = load_tokenizer(vllm_server.folder)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(vllm_server.folder, dtype=torch.float32).eval()
    for i, question in enumerate(QUESTIONS):
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
        out = sample(model, ids.input_ids, ids.attention_mask, max_new_tokens=24, eos_ids=[tokenizer.eos_token_id],
                     pad_id=tokenizer.pad_token_id)
        expected = tokenizer.decode(out.tokens[0, :int(out.lengths[0])], skip_special_tokens=True)
        assert answers[f"key{i}"].texts == [expected]
        assert answers[f"key{i}"].finish_reasons == ["stop" if bool(out.finished[0]) else "length"]


def test_sampled_answers_come_n_per_request(vllm_server, with_key):
    answers, failures = answer(teacher(vllm_server, temperature=1.0, extra_body={"seed": 3}), QUESTIONS[:2], n=3)
    assert failures == {} and all(len(a.texts) == 3 and a.completion_tokens > 0 for a in answers.values())


def test_check_names_the_served_model_and_a_wrong_one_stops_at_once(vllm_server, with_key):
    client = teacher(vllm_server)
    client.check()
    client.model = "llama"
    with pytest.raises(TeacherError, match=f"serves {vllm_server.model}, not teacher.model=llama; set teacher.model"):
        client.check()
    with pytest.raises(TeacherError, match="answered HTTP 404 for model 'llama'"):
        client.complete(requests(QUESTIONS), lambda r, res: None)


def test_a_wrong_key_stops_at_once_with_a_one_line_error_that_hides_the_key(vllm_server, monkeypatch):
    monkeypatch.setenv("TEACHER_KEY", "sk-wrong-key-000000")
    client = teacher(vllm_server, concurrency=1)
    for call in (client.check, lambda: client.complete(requests(QUESTIONS), lambda r, res: None)):
        with pytest.raises(TeacherError, match=r"refused the key in \$TEACHER_KEY \(HTTP 401\)") as error:
            call()
        assert "sk-wrong" not in str(error.value) and "\n" not in str(error.value)


def test_a_prompt_past_the_context_fails_alone_and_the_others_are_answered(vllm_server, with_key):
    too_long = "apples " * 600  # past the server's 512-token context
    answers, failures = answer(teacher(vllm_server, max_retries=3), [QUESTIONS[0], too_long, QUESTIONS[1]])
    assert set(answers) == {"key0", "key2"} and set(failures) == {"key1"}
    assert failures["key1"].startswith("HTTP 400: ") and SERVER_KEY not in failures["key1"]


def test_a_stalled_server_is_retried_until_it_answers_and_reported_when_retries_run_out(vllm_server, with_key):
    def stall(seconds):
        os.kill(vllm_server.process.pid, signal.SIGSTOP)
        resume = threading.Timer(seconds, os.kill, (vllm_server.process.pid, signal.SIGCONT))
        resume.start()
        return resume

    # Short answers and a timeout well above their time, so that only the stall makes a request time out.
    settings = {"timeout_s": 2.0, "max_tokens": 4}
    resume = stall(5.0)
    try:
        answers, failures = answer(teacher(vllm_server, max_retries=0, **settings), QUESTIONS)
    finally:
        resume.join()
    assert answers == {} and set(failures) == {"key0", "key1", "key2"}
    assert failures["key0"] == "ReadTimeout (after 1 attempts)"
    resume = stall(5.0)
    try:
        answers, failures = answer(teacher(vllm_server, max_retries=30, **settings), QUESTIONS)
    finally:
        resume.join()
    assert failures == {} and len(answers) == len(QUESTIONS)


def test_teach_stage_resumes_from_its_cache_without_asking_the_server_again(vllm_server, tmp_path):
    args = [sys.executable, "run.py", "stage=teach", "teacher=openai", f"teacher.base_url={vllm_server.base_url}",
            f"teacher.model={vllm_server.model}", "teacher.api_key_env=TEACHER_KEY", "teacher.max_tokens=32",
            "teach.n=6", "teach.progress=false", "logger=csv", f"paths.artifacts={tmp_path}/artifacts",
            f"paths.results={tmp_path}/results", f"hydra.run.dir={tmp_path}/job"]
    env = {**vllm_environment(tmp_path), "TEACHER_KEY": SERVER_KEY}
    folder = tmp_path / "artifacts" / "default" / "data" / "synthetic" / "openai" / "seed0"
    reports = []
    for _ in range(2):
        before = vllm_server.requests_served()
        out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        reports.append((json.loads((folder / "report.json").read_text()), vllm_server.requests_served() - before))
        assert SERVER_KEY not in out.stdout + out.stderr
    (first, served_first), (second, served_second) = reports
    # 6 questions x (CoMT, CoT): 12 requests the first time, answered by the server; none the second.
    assert first["requests"] == 12 and first["failed_requests"] == 0 and served_first == 12
    assert second["requests"] == 0 and second["cache_hits"] == 12 and served_second == 0
    for kind in ("comt", "cot"):
        assert second[kind] == first[kind]
    assert [p for p in tmp_path.rglob("*") if p.is_file() and SERVER_KEY.encode() in p.read_bytes()] == []
