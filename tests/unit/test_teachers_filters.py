"""The filters that turn teacher outputs into training targets, and the prompts and keys around them."""

import pytest

from cmt.data.problem import Problem
from cmt.data.synthetic import load
from cmt.teachers.filters import REASONS, FilterConfig, Sample, Selector, judge, leaked_numbers, split_final_answer
from cmt.teachers.prompts import build_request, cache_key, prompt_hash, render_messages
from cmt.teachers.rule import RuleTeacher

PROBLEM = Problem("p1", "Mia has 12 apples. She buys 5 bags with three apples in each. She gives 7 apples to Leo. "
                        "How many apples does Mia have now?", "20")
PROMPTS = {"system": None, "comt": "Plan only: {question}", "cot": "Solve: {question}"}


@pytest.mark.parametrize(("body", "leaks"), [
    ("Multiply the bags by the apples per bag, add them to the apples Mia had, subtract the 7 given.", []),
    ("Multiply 5 by 3 to get the apples bought.", []),  # "three" is in the question as a word
    ("Multiply 5 by 3 to get 15 apples bought.", ["15"]),
    ("1. Multiply the bags by the apples per bag.\n2. Add the apples Mia had.\nStep 3: subtract.", []),
    ("Convert to a percentage by multiplying by 100.", []),
    ("She ends with 20.0 apples.", ["20.0"]),
    ("Mia had 12.0 apples and 1,200 cents.", ["1,200"]),
])
def test_leaked_numbers_are_the_numbers_the_question_does_not_state(body, leaks):
    assert leaked_numbers(body, PROBLEM.question, allowed=(0, 1, 100)) == leaks


@pytest.mark.parametrize(("text", "body", "stated"), [
    ("Add them. The answer is 20.", "Add them.", "The answer is 20."),
    ("Add them.\nTherefore, the answer is 20 apples.", "Add them.", "Therefore, the answer is 20 apples."),
    ("Add them.\n#### 20", "Add them.", "#### 20"),
    ("Add them.\n**Final Answer:** \\boxed{20}", "Add them.", "**Final Answer:** 20"),
    ("Add them. The answer is the apples left.", "Add them. The answer is the apples left.", None),
    ("So Mia has \\boxed{20} apples.", "So Mia has 20 apples.", None),
])
def test_split_final_answer_removes_a_closing_sentence_that_states_a_value(text, body, stated):
    assert split_final_answer(text) == (body, stated)


def test_judge_attaches_the_gold_answer_and_drops_for_the_first_failing_reason():
    config = FilterConfig(max_words=40)
    comt = "Multiply the bags by the apples per bag. Add the apples Mia had. Subtract the apples given"
    assert judge(Sample(comt + ". The answer is 19."), PROBLEM, "comt", config) == (
        None, comt + ". The answer is 20.")
    assert judge(Sample(comt), PROBLEM, "comt", config)[1].endswith("given. The answer is 20.")
    assert judge(Sample("The answer is 20."), PROBLEM, "comt", config) == ("empty", None)
    assert judge(Sample("   "), PROBLEM, "cot", config) == ("empty", None)
    assert judge(Sample(comt, "length"), PROBLEM, "comt", config) == ("overlong", None)
    assert judge(Sample("word " * 41), PROBLEM, "comt", config) == ("overlong", None)
    assert judge(Sample("Buy 15 apples, then add."), PROBLEM, "comt", config) == ("leak", None)
    cot = "bought = 5 * 3 = 15. total = 12 + 15 = 27. left = 27 - 7 = 20."
    assert judge(Sample(cot + " The answer is 20."), PROBLEM, "cot", config) == (None, cot + " The answer is 20.")
    assert judge(Sample("bought = 5 * 3 = 15. So Mia has \\boxed{20} apples."), PROBLEM, "cot", config) == (
        None, "bought = 5 * 3 = 15. So Mia has 20 apples. The answer is 20.")
    assert judge(Sample(cot.replace("= 20", "= 21") + " The answer is 21."), PROBLEM, "cot", config) == (
        "wrong_answer", None)
    assert judge(Sample("Add the apples and subtract the given ones."), PROBLEM, "cot", config) == (
        "no_answer", None)


def test_selector_counts_every_sample_once_and_drops_duplicates_across_the_set():
    selector = Selector("comt", FilterConfig(select="shortest"))
    long_plan, short_plan = "Multiply the bags by the apples per bag, then add and subtract.", "Add, subtract."
    samples = [Sample(long_plan), Sample("Use 15."), Sample(short_plan), Sample(short_plan), Sample("x", "length")]
    assert selector.select(PROBLEM, samples, missing=2) == ["Add, subtract. The answer is 20."]
    again = Problem("p2", PROBLEM.question, "20")
    assert selector.select(again, [Sample(short_plan)]) == []
    assert dict(selector.counts) == {"kept": 1, "failed": 2, "empty": 0, "overlong": 1, "leak": 1, "no_answer": 0,
                                     "wrong_answer": 0, "duplicate": 2, "unselected": 1}
    assert sum(selector.counts.values()) == 5 + 2 + 1
    keep_all = Selector("comt", FilterConfig(select="all"))
    assert len(keep_all.select(PROBLEM, samples)) == 2 and keep_all.counts["unselected"] == 0
    assert set(selector.counts) == {"kept", *REASONS}
    with pytest.raises(ValueError, match="teach.select='best'"):
        FilterConfig(select="best")


def test_rule_teacher_traces_pass_every_filter_unchanged():
    problems = load("train", 300)
    teacher = RuleTeacher()
    for kind in ("comt", "cot"):
        selector = Selector(kind, FilterConfig())
        traces = teacher.write(problems, kind)
        kept = [selector.select(p, [Sample(t)]) for p, t in zip(problems, traces, strict=True)]
        assert selector.counts["kept"] + selector.counts["duplicate"] == len(problems)
        assert all(k == [t] for k, t in zip(kept, traces, strict=True) if k)


def test_prompts_render_the_question_and_keys_change_with_every_part():
    messages = render_messages({**PROMPTS, "system": "Be brief."}, "comt", "Q?")
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Plan only: Q?"}]
    fingerprint = {"model": "m", "temperature": 0.0}
    base = build_request(fingerprint, PROMPTS, "comt", "Q?", 1)
    assert base.key == cache_key(fingerprint, render_messages(PROMPTS, "comt", "Q?"), 1)
    assert len({base.key, build_request(fingerprint, PROMPTS, "cot", "Q?", 1).key,
                build_request(fingerprint, PROMPTS, "comt", "Q!", 1).key,
                build_request(fingerprint, PROMPTS, "comt", "Q?", 2).key,
                build_request({**fingerprint, "temperature": 0.5}, PROMPTS, "comt", "Q?", 1).key,
                build_request(fingerprint, {**PROMPTS, "comt": "Plan: {question}"}, "comt", "Q?", 1).key}) == 6
    assert prompt_hash(PROMPTS, "comt") != prompt_hash(PROMPTS, "cot") and len(prompt_hash(PROMPTS, "cot")) == 12
    with pytest.raises(ValueError, match=r"teach.prompts.cot must be a template with a \{question\} field"):
        render_messages({"comt": "x {question}", "cot": "no field"}, "cot", "Q?")
