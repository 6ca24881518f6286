"""The OpenAI-compatible client against the real test server on 127.0.0.1 (echo mode, injected failures)."""

import os
import random
import socket

import httpx
import pytest

from cmt.teachers.chat import ChatRequest, TeacherError
from cmt.teachers.openai import OpenAITeacher, backoff_delay

KEY = "sk-test-0123456789abcdef"


def stats(base_url):
    return httpx.get(base_url.removesuffix("/v1") + "/stats").json()


def client(base_url, **overrides):
    settings = {"api_key_env": None, "max_tokens": 64, "timeout_s": 0.5, "backoff_s": 0.02, "backoff_max_s": 0.1,
                "concurrency": 8, **overrides}
    return OpenAITeacher("openai", base_url, "echo", **settings)


def requests(count, n=1):
    return [ChatRequest(f"key{i}", [{"role": "user", "content": f"question {i} has 3 apples"}], n)
            for i in range(count)]


def test_every_request_is_answered_once_through_429_500_slow_and_dropped_responses(echo_server):
    base_url = echo_server("--fail-rate", "0.5", "--slow-s", "1.0", "--seed", "3")
    answers = {}
    # Half the attempts fail by design: 20 retries leave a request unanswered with odds 0.5**21 (6e-5 for all
    # 60), and a timeout above the normal answer's time under load still cuts the 1 s slow ones.
    failures = client(base_url, max_retries=20, timeout_s=0.8).complete(
        requests(60, n=2), lambda r, res: answers.setdefault(r.key, res))
    assert failures == {} and len(answers) == 60
    assert answers["key7"].texts == ["question 7 has 3 apples"] * 2 and answers["key7"].finish_reasons == ["stop"] * 2
    served = stats(base_url)
    assert served["served"] == {f"question {i} has 3 apples": 1 for i in range(60)}
    assert all(served["events"].get(f"fault_{mode}", 0) > 0 for mode in ("429", "500", "slow", "drop"))


def test_retries_are_bounded_and_an_exhausted_request_is_reported_not_raised(echo_server):
    base_url = echo_server("--fail-rate", "1.0", "--fail-modes", "500")
    answers = []
    failures = client(base_url, max_retries=2).complete(requests(4), lambda r, res: answers.append(res))
    assert answers == [] and set(failures) == {"key0", "key1", "key2", "key3"}
    assert failures["key0"] == "HTTP 500 (after 3 attempts)"
    assert stats(base_url)["events"]["requests"] == 4 * 3


def test_a_bad_request_fails_that_request_alone_without_retries(echo_server):
    base_url = echo_server()
    teacher = client(base_url, extra_body={"n": "many"}, max_retries=5)
    failures = teacher.complete(requests(3), lambda r, res: None)
    assert set(failures) == {"key0", "key1", "key2"} and failures["key0"].startswith("HTTP 400: ")
    assert stats(base_url)["events"] == {"bad_request": 3}


def test_a_wrong_key_or_model_stops_at_once_with_a_one_line_error_that_hides_the_key(echo_server, monkeypatch):
    base_url = echo_server("--api-key-env", "SERVER_KEY", env={**os.environ, "SERVER_KEY": KEY})
    monkeypatch.setenv("CLIENT_KEY", "sk-wrong-key-000000")
    with pytest.raises(TeacherError, match=r"refused the key in \$CLIENT_KEY \(HTTP 401\)") as error:
        client(base_url, api_key_env="CLIENT_KEY", concurrency=1).complete(requests(10), lambda r, res: None)
    assert "sk-wrong" not in str(error.value) and "\n" not in str(error.value)
    assert stats(base_url)["events"] == {"unauthorized": 1}
    monkeypatch.setenv("CLIENT_KEY", KEY)
    good = client(base_url, api_key_env="CLIENT_KEY", concurrency=1)
    good.check()
    good.model = "llama"
    with pytest.raises(TeacherError, match="answered HTTP 404 for model 'llama'"):
        good.complete(requests(10), lambda r, res: None)
    assert stats(base_url)["events"] == {"unauthorized": 1, "unknown_model": 1}
    with pytest.raises(TeacherError, match="serves echo, not teacher.model=llama; set teacher.model"):
        good.check()


def test_check_names_the_missing_variable_and_the_unreachable_server(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(TeacherError, match="environment variable NO_SUCH_KEY_VAR .* is not set"):
        client("http://127.0.0.1:1/v1", api_key_env="NO_SUCH_KEY_VAR").check()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TeacherError, match=f"cannot reach the teacher server at http://127.0.0.1:{port}/v1 "
                                           r"\(ConnectError\); start it"):
        client(f"http://127.0.0.1:{port}/v1").check()


def test_backoff_grows_exponentially_with_full_jitter_and_honours_retry_after():
    rng = random.Random(0)
    delays = [[backoff_delay(attempt, 1.0, 10.0, rng) for _ in range(2000)] for attempt in range(6)]
    assert [max(d) <= min(10.0, 2 ** a) for a, d in enumerate(delays)] == [True] * 6
    # Uniform over [0, cap]: the mean is half the cap, which doubles per retry until backoff_max_s.
    assert all(abs(sum(d) / len(d) - min(10.0, 2 ** a) / 2) < 0.05 * min(10.0, 2 ** a) for a, d in enumerate(delays))
    assert min(delays[3]) < 0.1
    assert backoff_delay(0, 1.0, 10.0, rng, retry_after=5.0) == 5.0
    assert backoff_delay(0, 1.0, 10.0, rng, retry_after=500.0) == 10.0
