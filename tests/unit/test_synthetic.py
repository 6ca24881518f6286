"""The synthetic benchmark: deterministic, well-formed, and split the way its docstring promises."""

import re

import pytest

from cmt.data import synthetic
from cmt.data.synthetic import generate, steps_of
from cmt.teachers.rule import RuleTeacher


def _evaluate(step):
    return {"+": step.left + step.right, "-": step.left - step.right, "*": step.left * step.right}[step.op]


def test_same_seed_same_problems_and_other_seed_differs():
    assert generate("id", 50, seed=3) == generate("id", 50, seed=3)
    assert [p.question for p in generate("id", 50, seed=3)] != [p.question for p in generate("id", 50, seed=4)]


@pytest.mark.parametrize("split", synthetic.SPLITS)
def test_gold_is_the_program_result_and_steps_chain(split):
    for problem in generate(split, 100, seed=1):
        steps = steps_of(problem)
        assert all(_evaluate(s) == s.value for s in steps)
        assert problem.gold == str(steps[-1].value)
        assert problem.intermediate == [s.value for s in steps]
        assert all(s.value >= 0 for s in steps)


def test_train_and_id_test_share_no_question():
    train = {p.question for p in generate("train", 2000, seed=0)}
    test = {p.question for p in generate("id", 500, seed=0)}
    assert not train & test


def test_ood_splits_differ_from_training_as_documented():
    train_names = {name for name, _ in synthetic.NAMES["train"]}
    renamed = generate("ood_renamed", 100, seed=0)
    assert all(not any(name in p.question for name in train_names) for p in renamed)
    assert max(len(p.intermediate) for p in generate("train", 500, seed=0)) < min(
        len(p.intermediate) for p in generate("ood_steps", 100, seed=0))
    assert all(int(p.question.split(" has ")[1].split()[0]) >= 100 for p in generate("ood_numbers", 100, seed=0))
    unseen = ("sells", "doubles")
    assert all(any(w in p.question for w in unseen) for p in generate("ood_templates", 100, seed=0))
    assert not any(any(w in p.question for w in unseen) for p in generate("train", 500, seed=0))


def test_meta_thoughts_have_no_numbers_but_the_answer_and_cot_executes_every_step():
    problems = generate("id", 100, seed=2)
    teacher = RuleTeacher()
    comts, cots = teacher.write(problems, "comt"), teacher.write(problems, "cot")
    for problem, comt, cot in zip(problems, comts, cots, strict=True):
        body, answer = comt.rsplit("The answer is", 1)
        assert not re.search(r"\d", body)
        assert answer.strip() == f"{problem.gold}."
        assert all(f"= {v}." in cot for v in problem.intermediate)


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="unknown synthetic split 'nope'"):
        generate("nope", 3)
    with pytest.raises(ValueError, match="n must be positive"):
        generate("id", 0)
    with pytest.raises(ValueError, match="teacher=rule needs synthetic problems"):
        from cmt.data.problem import Problem

        RuleTeacher().write([Problem("x", "What is 1 + 1?", "2")], "comt")
