"""The local transformers teacher: batched generation on a real (tiny) model, and the model-backed server."""

import shutil

import httpx
import pytest

from cmt.data.synthetic import load
from cmt.models import ModelNotFoundError, bundled_path
from cmt.stages import teach
from cmt.stages.common import StageContext
from cmt.teachers.chat import ChatRequest
from cmt.teachers.filters import REASONS
from cmt.teachers.hf import HFTeacher
from cmt.teachers.openai import OpenAITeacher
from tools.openai_server import launch


@pytest.fixture(scope="module")
def model_dir():
    """The bundled tiny model's folder."""
    return str(bundled_path("tiny"))


def chats(count, n=1):
    questions = [p.question for p in load("train", count)]
    return [ChatRequest(f"k{i}", [{"role": "user", "content": f"Plan: {q}"}], n) for i, q in enumerate(questions)]


def run(teacher, requests):
    answers = {}
    assert teacher.complete(requests, lambda r, res: answers.__setitem__(r.key, res)) == {}
    return answers


def test_batched_greedy_generation_matches_one_at_a_time_and_reports_every_request(model_dir):
    requests = chats(7, n=2)
    batched = run(HFTeacher(path=model_dir, batch_size=6, max_tokens=6, device="cpu"), requests)
    single = run(HFTeacher(path=model_dir, batch_size=1, max_tokens=6, device="cpu"), [
        ChatRequest(r.key, r.messages, 1) for r in requests])
    assert set(batched) == {r.key for r in requests}
    for key, result in batched.items():
        assert result.texts == single[key].texts * 2
        assert set(result.finish_reasons) <= {"stop", "length"} and 0 < result.completion_tokens <= 12
    assert "length" in {reason for result in batched.values() for reason in result.finish_reasons}


def test_sampling_is_seeded_and_the_fingerprint_names_what_changes_answers(model_dir):
    requests = chats(3, n=3)
    draws = [run(HFTeacher(path=model_dir, max_tokens=8, temperature=1.0, seed=5, device="cpu"), requests)
             for _ in range(2)]
    assert draws[0] == draws[1]
    assert len({t for result in draws[0].values() for t in result.texts}) > 3
    greedy = HFTeacher(path=model_dir, max_tokens=8).fingerprint()
    assert greedy["model"] == model_dir and "seed" not in greedy
    assert HFTeacher(path=model_dir, temperature=0.5, seed=1).fingerprint()["seed"] == 1
    with pytest.raises(ModelNotFoundError, match="model.path=/nope is not a folder"):
        HFTeacher(path="/nope").check()


def test_the_server_serves_the_model_to_the_openai_client(model_dir):
    process, base_url = launch(["--model", model_dir, "--served-model-name", "tiny"])
    try:
        teacher = OpenAITeacher("openai", base_url, "tiny", api_key_env=None, max_tokens=6, timeout_s=60)
        teacher.check()
        requests = chats(3)
        remote = run(teacher, requests)
        local = run(HFTeacher(path=model_dir, batch_size=1, max_tokens=6, device="cpu"), requests)
        assert {k: r.texts for k, r in remote.items()} == {k: r.texts for k, r in local.items()}
        assert httpx.get(base_url.removesuffix("/v1") + "/stats").json()["events"] == {"requests": 3, "served": 3}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_stage_teach_with_the_local_teacher_caches_every_answer_and_reruns_without_the_model(
        model_dir, cfg_factory, tmp_path):
    copy = shutil.copytree(model_dir, tmp_path / "teacher")
    overrides = ["stage=teach", "teacher=hf", f"teacher.path={copy}", "teacher.max_tokens=8", "teach.n=6",
                 "teach.progress=false", "teacher.device=cpu"]
    first = teach.run(StageContext(cfg_factory(overrides), None, "first"))
    assert first["teach/requests"] == 12 and first["teach/cache_hits"] == 0
    assert all(sum(first[f"teach/{kind}_{k}"] for k in ("kept", *REASONS)) == 6 for kind in ("comt", "cot"))
    shutil.rmtree(copy)
    again = teach.run(StageContext(cfg_factory(overrides), None, "again"))
    assert again["teach/requests"] == 0 and again["teach/cache_hits"] == 12
