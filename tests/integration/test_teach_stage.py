"""``stage=teach`` in process on the real config: rule teacher, and an OpenAI teacher on the real echo server."""

import json

import httpx
import pytest

from cmt.artifacts import training_set_path
from cmt.data.prompts import answer_sentence
from cmt.results.store import read_jsonl
from cmt.stages import teach
from cmt.stages.common import StageContext
from cmt.teachers.chat import TeacherError
from cmt.teachers.filters import REASONS
from cmt.teachers.prompts import prompt_hash
from tools.openai_server import launch


@pytest.fixture
def echo():
    process, base_url = launch(["--echo"])
    yield base_url
    process.terminate()
    process.wait(timeout=10)


def openai_overrides(base_url, *more):
    return ["stage=teach", "teacher=openai", f"teacher.base_url={base_url}", "teacher.model=echo",
            "teacher.api_key_env=null", "teacher.timeout_s=2", "teach.progress=false", *more]


def outcomes(report, kind):
    return sum(report[kind][k] for k in ("kept", *REASONS))


def test_rule_teacher_writes_both_sets_with_a_report_that_accounts_for_every_question(cfg_factory):
    cfg = cfg_factory(["stage=teach", "teach.n=50"])
    metrics = teach.run(StageContext(cfg, None, "test"))
    for kind in ("comt", "cot"):
        records = read_jsonl(training_set_path(cfg, kind))
        assert len(records) == metrics[f"teach/{kind}_kept"] == 50
        assert set(records[0]) == {"id", "question", "target", "kind", "teacher", "prompt_hash"}
        assert records[0]["kind"] == kind and records[0]["teacher"] == "rule" and records[0]["prompt_hash"] is None
    folder = training_set_path(cfg, "comt").parent
    report = json.loads((folder / "report.json").read_text())
    assert outcomes(report, "comt") == outcomes(report, "cot") == 50
    assert metrics["teach/comt_cot_token_ratio"] == pytest.approx(
        report["comt"]["mean_tokens"] / report["cot"]["mean_tokens"])
    assert (folder / "config.yaml").is_file()


def test_openai_teacher_resumes_from_the_cache_without_the_server(cfg_factory, echo):
    cfg = cfg_factory(openai_overrides(echo, "teach.n=30", "teacher.max_tokens=60"))
    first = teach.run(StageContext(cfg, None, "first"))
    served = httpx.get(echo.removesuffix("/v1") + "/stats").json()["served"]
    assert len(served) == first["teach/requests"] == 60 and set(served.values()) == {1}
    comt = read_jsonl(training_set_path(cfg, "comt"))
    assert comt and all(r["prompt_hash"] == prompt_hash(cfg.teach.prompts, "comt") for r in comt)
    questions = {r["id"]: r["question"] for r in comt}
    # Echo answers repeat the prompt: its numbers are the question's, so meta-thoughts pass the leak filter.
    assert all(r["target"].startswith("Solve this problem by describing") for r in comt)
    assert all(questions[r["id"]] in r["target"] for r in comt)
    report = json.loads((training_set_path(cfg, "comt").parent / "report.json").read_text())
    assert outcomes(report, "comt") == outcomes(report, "cot") == 30
    # The same command with the server gone: every answer comes from the cache, the output is identical.
    cfg_offline = cfg_factory(openai_overrides("http://127.0.0.1:1/v1", "teach.n=30", "teacher.max_tokens=60"))
    before = {k: training_set_path(cfg, k).read_text() for k in ("comt", "cot")}
    again = teach.run(StageContext(cfg_offline, None, "again"))
    assert again["teach/requests"] == 0 and again["teach/cache_hits"] == 60
    assert {k: training_set_path(cfg, k).read_text() for k in ("comt", "cot")} == before
    # A changed sampling parameter is another teacher: it must ask again, and the server is gone.
    with pytest.raises(TeacherError, match="cannot reach the teacher server at http://127.0.0.1:1/v1"):
        teach.run(StageContext(cfg_factory(openai_overrides("http://127.0.0.1:1/v1", "teach.n=30")), None, "x"))


def test_gold_answers_are_attached_to_kept_traces(cfg_factory, echo):
    cfg = cfg_factory(openai_overrides(echo, "teach.n=10", "teach.kinds=[comt]"))
    teach.run(StageContext(cfg, None, "test"))
    from cmt.data.suite import train_problems

    gold = {p.id: p.gold for p in train_problems(cfg.benchmark, 10)}
    records = read_jsonl(training_set_path(cfg, "comt"))
    assert len(records) == 10 and all(r["target"].endswith(" " + answer_sentence(gold[r["id"]])) for r in records)
    assert not training_set_path(cfg, "cot").exists()


def test_bad_settings_fail_before_any_request(cfg_factory, echo, monkeypatch):
    monkeypatch.delenv("MISSING_TEACHER_KEY", raising=False)
    cfg = cfg_factory(openai_overrides(echo, "teach.n=5", "teacher.api_key_env=MISSING_TEACHER_KEY"))
    with pytest.raises(TeacherError, match="environment variable MISSING_TEACHER_KEY .* is not set"):
        teach.run(StageContext(cfg, None, "test"))
    with pytest.raises(TeacherError, match="serves echo, not teacher.model=gpt; set teacher.model"):
        teach.run(StageContext(cfg_factory(openai_overrides(echo, "teach.n=5", "teacher.model=gpt")), None, "t"))
    assert httpx.get(echo.removesuffix("/v1") + "/stats").json()["events"] == {}


def test_samples_per_question_are_selected_and_counted(cfg_factory, echo):
    cfg = cfg_factory(openai_overrides(echo, "teach.n=8", "teach.n_samples=3", "teacher.temperature=0.7",
                                       "teach.select=all"))
    metrics = teach.run(StageContext(cfg, None, "test"))
    # The echo server answers the same text three times: one is kept, two are duplicates.
    assert metrics["teach/comt_kept"] == 8 and metrics["teach/comt_duplicate"] == 16
    assert sum(metrics[f"teach/cot_{k}"] for k in ("kept", *REASONS)) == 24
