"""Properties the CCRL reward must have, whatever the rollout: it cannot be raised by text that does not
solve the problem, and it ranks what it judges the way the paper describes.

Each property is checked with the repository's reward presets (`conf/reward/*.yaml`, read as Hydra composes
them) on rollouts tokenized by the bundled tiny model's real tokenizer, with per-token confidences chosen by
the test. Every test here failed on the reward of commit 39f1412 (``correctness: arithmetic``, no
missing-answer rule, the last-number fallback for truncated rollouts).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from cmt.data.benchmarks import gsm8k
from cmt.data.problem import Problem
from cmt.data.synthetic import generate, steps_of
from cmt.models import bundled_path, load_tokenizer
from cmt.rewards.calibration import judge_steps
from cmt.rewards.combine import RewardConfig, compute_rewards
from cmt.rewards.dataflow import question_quantities
from cmt.rewards.types import Rollout
from cmt.teachers.rule import RuleTeacher
from tests.conftest import CONF

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"
SCORED_PRESETS = ("ccrl", "ccrl_brier", "ccrl_log")
ALL_PRESETS = ("ccrl", "ccrl_brier", "ccrl_log", "ccrl_step", "outcome_only")
TOKENIZER = load_tokenizer(str(bundled_path("tiny")))
PROBLEMS = generate("ood_steps", 30, seed=3) + generate("train", 30, seed=3)
COTS = RuleTeacher().write(PROBLEMS, "cot")
COMTS = RuleTeacher().write(PROBLEMS, "comt")


OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def preset(name: str, **changes) -> RewardConfig:
    """A reward preset as Hydra composes it (its ``defaults: [ccrl, _self_]`` merged), with ``changes``."""
    node = OmegaConf.load(CONF / "reward" / f"{name}.yaml")
    base = OmegaConf.load(CONF / "reward" / "ccrl.yaml") if "defaults" in node else OmegaConf.create()
    node.pop("defaults", None)
    merged = OmegaConf.to_container(OmegaConf.merge(base, node, changes))
    return RewardConfig.from_mapping(merged)


def rollout(text: str, confidence=lambda start, end: 0.9, finished: bool = True) -> Rollout:
    """``text`` (+ EOS when finished) tokenized by the tiny model's tokenizer; each token's probability is
    ``confidence(start, end)`` of its character span."""
    ids = TOKENIZER(text, add_special_tokens=False).input_ids + ([TOKENIZER.eos_token_id] if finished else [])
    draft = Rollout.from_tokens(TOKENIZER, 0, ids, [0.0] * len(ids), finished)
    logprobs = [math.log(min(max(confidence(a, b), 1e-6), 1.0)) for a, b in draft.offsets]
    return Rollout.from_tokens(TOKENIZER, 0, ids, logprobs, finished)


def total(config: RewardConfig, r: Rollout, problem: Problem) -> float:
    return compute_rewards([r], [problem], config).totals[0]


def wrong_answer(problem: Problem, offset: int) -> str:
    return str(int(problem.gold) + offset)


# --- padding with irrelevant true equations never raises a reward ------------------------------------------

def test_the_issues_padding_example_no_longer_pays():
    """The finding of issue 20: four ``1 + 1 = 2.`` after a wrong answer at confidence 0.9 raised its reward
    (-0.35 -> +0.41 signed, 0.29 -> 0.94 Brier, -0.36 -> +0.01 log)."""
    problem = PROBLEMS[0]
    plain = f"{COMTS[0].rsplit(' The answer', 1)[0]} The answer is {wrong_answer(problem, 1)}."
    padded = plain.replace(" The answer is", " 1 + 1 = 2." * 4 + " The answer is")
    for name in SCORED_PRESETS:
        config = preset(name)
        assert total(config, rollout(padded), problem) <= total(config, rollout(plain), problem), name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(PROBLEMS) - 1), cot=st.booleans(), answer_offset=st.sampled_from([0, 1, -3, 11]),
       base_confidence=st.floats(0.05, 0.99), pad_confidence=st.floats(0.05, 1.0),
       equations=st.lists(st.tuples(st.integers(0, 60), st.sampled_from("+-*"), st.integers(0, 60)),
                          min_size=1, max_size=5),
       where=st.integers(0, 10), aggregation=st.sampled_from(["mean", "min", "sum"]),
       name=st.sampled_from(SCORED_PRESETS))
def test_padding_with_irrelevant_true_equations_never_raises_the_reward(
        index, cot, answer_offset, base_confidence, pad_confidence, equations, where, aggregation, name):
    problem = PROBLEMS[index]
    inputs = question_quantities(problem.question) | {float(v) for v in problem.intermediate}
    # Irrelevant: no operand is a quantity of the question or a value of its solution.
    assume(all(a not in inputs and b not in inputs for a, _, b in equations))
    body = (COTS if cot else COMTS)[index].rsplit(" The answer", 1)[0]
    plain = f"{body} The answer is {wrong_answer(problem, answer_offset)}."
    # The padding goes between two sentences: before sentence `where` (at most before the answer sentence).
    parts = plain.split(". ")
    cut = min(where, len(parts) - 1)
    pads = [f"{a} {op} {b} = {OPERATIONS[op](a, b)}" for a, op, b in equations]
    padded = ". ".join(parts[:cut] + pads + parts[cut:])
    start = len(". ".join(parts[:cut] + [""])) if cut else 0
    end = start + len(". ".join(pads))

    def confidence(a, b):
        return pad_confidence if start <= a < end else base_confidence

    config = preset(name, step_aggregation=aggregation)
    assert total(config, rollout(padded, confidence), problem) <= total(
        config, rollout(plain, lambda a, b: base_confidence), problem) + 1e-9


# --- a wrong operation on the right inputs is judged wrong where reference values exist --------------------

def _verdicts(text: str, problem: Problem) -> list[tuple[str, bool]]:
    config = preset("ccrl")
    return [(j.step.value, j.correct) for j in judge_steps(
        rollout(text), problem, extraction=config.extraction, confidence=config.confidence,
        correctness=config.correctness)]


def test_a_wrong_operation_on_the_right_inputs_is_wrong_in_the_synthetic_world():
    checked = 0
    for problem in generate("train", 200, seed=0):
        for step in steps_of(problem):
            if step.op != "-" or step.left + step.right in problem.intermediate:
                continue
            text = f"{step.name} = {step.left} + {step.right} = {step.left + step.right}. The answer is {problem.gold}."
            assert _verdicts(text, problem)[0] == (str(step.left + step.right), False), (problem.question, text)
            right = f"{step.name} = {step.left} - {step.right} = {step.value}. The answer is {problem.gold}."
            assert _verdicts(right, problem)[0] == (str(step.value), True)
            checked += 1
    assert checked > 20


def test_a_wrong_operation_on_the_right_inputs_is_wrong_on_gsm8k_train():
    problem = gsm8k.load("train", path=str(FIXTURES / "gsm8k" / "{split}.jsonl"))[0]
    assert problem.intermediate == [30.0, 23.0]  # Tom: 5 * 6 = 30 pens, 30 - 7 = 23 left
    assert _verdicts("He has 5 * 6 = 30 pens. Then 30 + 7 = 37 pens. The answer is 37.", problem) == [
        ("30", True), ("37", False), ("37", False)]
    assert _verdicts("He has 5 * 6 = 30 pens. Then 30 - 7 = 23 pens. The answer is 23.", problem) == [
        ("30", True), ("23", True), ("23", True)]


# --- no answer never scores above a wrong answer ---------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(PROBLEMS) - 1), cot=st.booleans(), keep=st.floats(0.0, 1.0),
       answer_offset=st.sampled_from([1, -2, 7]), confidence=st.floats(0.01, 1.0),
       steps_confidence=st.floats(0.01, 1.0), finished=st.booleans(), answer_finished=st.booleans(),
       aggregation=st.sampled_from(["mean", "min", "sum"]), name=st.sampled_from(ALL_PRESETS))
def test_a_rollout_without_an_answer_never_scores_above_one_with_a_wrong_answer(
        index, cot, keep, answer_offset, confidence, steps_confidence, finished, answer_finished, aggregation, name):
    problem = PROBLEMS[index]
    body = (COTS if cot else COMTS)[index].rsplit(" The answer", 1)[0]
    body = body[:max(1, int(len(body) * keep))]
    silent = rollout(body, lambda a, b: steps_confidence, finished=finished)
    config = preset(name, step_aggregation=aggregation)
    # Silent: no answer can be read from it (a plan, or worked steps cut before they reach a result).
    assume(not any(j.step.is_final for j in judge_steps(silent, problem, extraction=config.extraction)))
    answered_text = f"{body} The answer is {wrong_answer(problem, answer_offset)}."
    answered = rollout(answered_text, lambda a, b: steps_confidence if b <= len(body) else confidence,
                       finished=answer_finished)
    # With the answer sentence the rollout states a wrong answer (a truncated one too: it wrote the sentence).
    assert compute_rewards([answered], [problem], config).terms["outcome"][0] == 0.0
    assert total(config, silent, problem) <= total(config, answered, problem) + 1e-9


def test_no_answer_scores_below_a_confident_wrong_answer_under_every_score():
    """The issue's example: with signed and log scoring, saying nothing beat a confident wrong answer."""
    problem = PROBLEMS[0]
    plan = COMTS[0].rsplit(" The answer", 1)[0]
    for name in ALL_PRESETS:
        config = preset(name)
        silent = total(config, rollout(plan), problem)
        wrong = total(config, rollout(f"{plan} The answer is {wrong_answer(problem, 1)}.", lambda a, b: 0.99), problem)
        assert silent <= wrong, name


def test_a_truncated_rollout_earns_no_outcome_from_its_last_number():
    problem = PROBLEMS[0]
    steps = COTS[0].rsplit(" The answer", 1)[0]
    assert steps.rstrip(".").endswith(problem.gold)  # the last number written is the right answer
    config = preset("ccrl")
    cut = compute_rewards([rollout(steps, finished=False)], [problem], config)
    assert cut.terms["outcome"] == [0.0]
    ended = compute_rewards([rollout(steps, finished=True)], [problem], config)
    assert ended.terms["outcome"] == [1.0]  # a finished rollout's last number still counts (eval's flexible)
    stated = compute_rewards([rollout(COTS[0], finished=False)], [problem], config)
    assert stated.terms["outcome"] == [1.0]  # the answer sentence counts even when cut after it


# --- a confident wrong step costs more than an unsure one -------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(PROBLEMS) - 1), low=st.floats(0.02, 0.5), high=st.floats(0.6, 0.98),
       answer_right=st.booleans(), name=st.sampled_from(SCORED_PRESETS + ("ccrl_step",)))
def test_a_wrong_step_at_high_confidence_scores_below_the_same_step_at_low_confidence(
        index, low, high, answer_right, name):
    problem = PROBLEMS[index]
    program = steps_of(problem)
    first = program[0]
    wrong_value = first.left + first.right if first.op != "+" else first.left * first.right
    assume(wrong_value not in problem.intermediate)
    # The right inputs, a true equation, but not the problem's operation.
    op = "+" if first.op != "+" else "*"
    step = f"{first.name} = {first.left} {op} {first.right} = {wrong_value}."
    answer = problem.gold if answer_right else wrong_answer(problem, 1)
    text = f"{step} The answer is {answer}."
    value_at = text.index(f"= {wrong_value}.") + 2
    span = (value_at, value_at + len(str(wrong_value)))

    def at(c):
        return lambda a, b: c if a < span[1] and b > span[0] else 0.9

    config = preset(name)
    assert total(config, rollout(text, at(high)), problem) < total(config, rollout(text, at(low)), problem)


@pytest.mark.parametrize("name", ["ccrl", "ccrl_step"])
def test_a_right_step_adds_to_a_rollout_where_irrelevant_ones_do_not(name):
    """The step mechanism works for execution that solves the problem: under the signed score a right,
    confident step raises a rollout with a wrong answer, padding does not. (Under log every step scores at
    most 0, and under Brier at least 0: docs/rl.md says what each does to execution.)"""
    problem = PROBLEMS[0]
    step = steps_of(problem)[0]
    wrong = f"The answer is {wrong_answer(problem, 1)}."
    executed = f"{step.cot} {wrong}"
    config = preset(name)

    def confident(start, end):
        return 0.95

    assert total(config, rollout(executed, confident), problem) > total(config, rollout(wrong, confident), problem)


# --- more steps cannot dilute a confident wrong answer ----------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(PROBLEMS) - 1), answer_confidence=st.floats(0.3, 0.99),
       step_confidence=st.floats(0.01, 1.0), picks=st.lists(st.tuples(st.integers(0, 99), st.sampled_from("+-*"),
                                                                      st.integers(0, 99), st.integers(-3, 3)),
                                                            min_size=1, max_size=4),
       name=st.sampled_from(("ccrl", "ccrl_log", "ccrl_step", "outcome_only")))
def test_steps_that_are_wrong_for_the_problem_never_raise_the_reward(
        index, answer_confidence, step_confidence, picks, name):
    """With the mean over a rollout's own steps, three wrong steps at confidence 0.05 raised a wrong answer at
    0.9 from -0.35 to -0.03 (signed): doubtful steps diluted the answer's score. ``ccrl_brier`` is left out on
    purpose: a proper score rewards doubt on a wrong step (docs/rl.md)."""
    problem = PROBLEMS[index]
    quantities = sorted(q for q in question_quantities(problem.question) if q.denominator == 1 and q > 0)
    golds = {float(v) for v in problem.intermediate} | {float(problem.gold)}
    steps = []
    for a, op, b, slip in picks:
        left, right = int(quantities[a % len(quantities)]), int(quantities[b % len(quantities)])
        value = OPERATIONS[op](left, right) + slip  # on the problem's own quantities, right or slipped arithmetic
        assume(value not in golds and value not in (left, right))
        steps.append(f"x = {left} {op} {right} = {value}.")
    plain = f"The answer is {wrong_answer(problem, 1)}."
    padded = " ".join(steps) + " " + plain
    answer_at = padded.index("The answer")
    config = preset(name)
    assert total(config, rollout(padded, lambda a, b: answer_confidence if a >= answer_at else step_confidence),
                 problem) <= total(config, rollout(plain, lambda a, b: answer_confidence), problem) + 1e-9


# --- where the data has no gold intermediate values (the dataflow check) ----------------------------------

# The same problems with their gold intermediate values removed, as SVAMP, ASDiv or MATH problems come.
NO_GOLD = [Problem(p.id, p.question, p.gold, {k: v for k, v in p.meta.items() if k != "intermediate"})
           for p in PROBLEMS]


def _chain(problem: Problem, picks) -> tuple[list[str], int]:
    """Steps over the problem's quantities, each using the previous result when there is one, so every step
    feeds the last value (which the rollout then gives as its answer). Returns the steps and that value."""
    quantities = sorted(int(q) for q in question_quantities(problem.question) if q.denominator == 1 and q > 1)
    steps, previous = [], None
    for a, op, b, slip in picks:
        left = previous if previous is not None else quantities[a % len(quantities)]
        right = quantities[b % len(quantities)]
        value = OPERATIONS[op](left, right) + slip
        steps.append(f"x = {left} {op} {right} = {value}.")
        previous = value
    return steps, previous


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(NO_GOLD) - 1), answer_confidence=st.floats(0.3, 0.99),
       step_confidence=st.floats(0.01, 1.0), picks=st.lists(st.tuples(st.integers(0, 99), st.sampled_from("+-*"),
                                                                      st.integers(0, 99), st.integers(-2, 2)),
                                                            min_size=1, max_size=3),
       name=st.sampled_from(("ccrl", "ccrl_log", "ccrl_step", "outcome_only")))
def test_steps_leading_to_a_wrong_answer_never_raise_it_where_no_gold_values_exist(
        index, answer_confidence, step_confidence, picks, name):
    """Without gold values, steps that feed a wrong answer cannot raise its reward: not right arithmetic
    that justifies it (``12 + 4 = 16. The answer is 16.`` scored -> (0.95 - 0.9) / 2 = +0.03 against -0.9
    for the bare answer under the signed mean), nor slipped arithmetic at low confidence, which diluted the
    answer's score (-0.475 against -0.9). ``ccrl_brier`` is left out for the reason given above."""
    problem = NO_GOLD[index]
    steps, answer = _chain(problem, picks)
    assume(answer != int(problem.gold))
    plain = f"The answer is {answer}."
    chained = " ".join(steps) + " " + plain
    answer_at = chained.index("The answer")
    config = preset(name)
    assert total(config, rollout(chained, lambda a, b: answer_confidence if a >= answer_at else step_confidence),
                 problem) <= total(config, rollout(plain, lambda a, b: answer_confidence), problem) + 1e-9


def test_steps_of_a_right_answer_are_judged_where_no_gold_values_exist():
    """The dataflow check still judges execution: the worked steps of a right answer are judged right, and a
    confident arithmetic slip that carries into the answer costs more than an unsure one."""
    problem, cot = NO_GOLD[0], COTS[0]
    judged = judge_steps(rollout(cot), problem, correctness="problem")
    assert len(judged) > 1 and all(j.correct for j in judged)
    # The last step slips by one and the answer follows it.
    slip = str(int(problem.gold) + 1)
    slipped = cot.replace(f"= {problem.gold}. The answer is {problem.gold}.", f"= {slip}. The answer is {slip}.")
    assert slipped != cot
    verdicts = [(j.step.value, j.correct) for j in judge_steps(rollout(slipped), problem, correctness="problem")]
    assert verdicts == [(slip, False), (slip, False)]
    value_at = slipped.index(f"= {slip}.") + 2
    span = (value_at, value_at + len(slip))

    def at(c):
        return lambda a, b: c if a < span[1] and b > span[0] else 0.9

    config = preset("ccrl")
    assert total(config, rollout(slipped, at(0.95)), problem) < total(config, rollout(slipped, at(0.05)), problem)
