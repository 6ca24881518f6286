"""CCRL's reward layer on hand-worked cases: steps and their tokens, confidence, correctness, calibration,
the weighted total in both granularities, and a parser that survives hostile text.

Tokenizers are real byte-level BPEs trained here in milliseconds: the bundled tiny model's recipe
(`cmt.tiny.train_tokenizer`, one token per digit) and a GPT-2-style one whose tokens merge a space with
several digits, so spans are checked against both ways of spelling a number.
"""

import math
import time
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from cmt.data.problem import Problem
from cmt.data.synthetic import generate
from cmt.eval.evaluate import Completion, score
from cmt.generation import Sampled, decode_with_offsets
from cmt.rewards.arith import ExpressionError, evaluate
from cmt.rewards.calibration import calibration_term, step_score, step_shares
from cmt.rewards.combine import RewardConfig, compute_rewards
from cmt.rewards.confidence import step_confidence
from cmt.rewards.correctness import arithmetic_matches, step_correctness
from cmt.rewards.outcome import format_term, outcome_term
from cmt.rewards.steps import find_steps
from cmt.rewards.types import Rollout, rollouts_from_sampled
from cmt.teachers.rule import RuleTeacher
from cmt.tiny import EOS, PAD, train_tokenizer

CORPUS = [
    "Mia has 12 apples. She buys 5 bags with 3 apples in each. bought = 5 * 3 = 15. total = 12 + 15 = 27. "
    "The answer is 27.",
    "Multiply the bags by the apples per bag to get the apples bought. Add them to the apples Mia had. "
    "The answer is 20.",
    "left = 27 - 7 = 20. The answer is 20. 1,200 + 300 = 1,500 and 10 / 4 = 2.5",
] * 10


@pytest.fixture(scope="module")
def tok():
    """The tiny model's tokenizer recipe: byte-level BPE, every digit its own token."""
    return train_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def gpt2_tok():
    """A GPT-2-style byte-level BPE (no digit splitting): ' 15' and ' 27' become single tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=[EOS, PAD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, pad_token=PAD)


def rollout(tok, text, logprob=lambda index, piece: math.log(0.99), finished=True, problem_index=0):
    """A rollout of ``text`` (+ EOS when finished) with log-probs chosen per token by ``logprob``."""
    ids = tok(text, add_special_tokens=False).input_ids + ([tok.eos_token_id] if finished else [])
    pieces = [tok.decode([i]) for i in ids]
    return Rollout.from_tokens(tok, problem_index, ids, [logprob(i, p) for i, p in enumerate(pieces)], finished)


def pieces(r, indices):
    return [r.text[slice(*r.offsets[i])] for i in indices]


PROBLEM = Problem("p0", "Mia has 12 apples. She buys 5 bags with 3 apples in each. How many?", "27",
                  {"intermediate": [15, 27]})
# The same problem as a benchmark without gold intermediate values gives it: steps get the dataflow check.
QUESTION_ONLY = Problem("p1", PROBLEM.question, "27")
COT = "bought = 5 * 3 = 15. total = 12 + 15 = 27. The answer is 27."
COMT = "Multiply the bags by the apples per bag. Add them to the apples Mia had. The answer is 27."


# --- arithmetic parser -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("12 + 5 * 3", 27),                  # * binds tighter: 12 + 15
    ("-(27 - 7) / 2", -10),              # unary minus of (20) / 2
    ("2 - -3", 5),
    ("10 / 4", Fraction(5, 2)),          # exact, not 2.5000000001
    ("1,200 × 0.5", 600),                # thousands separator, Unicode times
    ("$5 * 3", 15),
    ("(1+2)*(3+4)", 21),
    ("0.1 + 0.2", Fraction(3, 10)),      # exact decimal arithmetic
    ("12 ÷ 4 − 1", 2),                   # Unicode divide and minus
])
def test_evaluate_computes_exactly(text, value):
    assert evaluate(text) == value


@pytest.mark.parametrize("text", [
    "", "1 +", "(1", "1)", "()", "2 ** 3", "2 ^ 3", "1e5", "1/0", "1,20 + 3", "5.", "abc", "3 4",
    "9" * 30,                                   # literal over 24 digits
    "1000000000 * 1000000000",                  # 1e18 exceeds the 1e15 magnitude bound
    "(" * 40 + "1" + ")" * 40,                  # nesting deeper than 32
    "-" * 40 + "1",                             # unary chain deeper than 32
    "1" + " + 1" * 100,                         # 401 characters: over the input bound
    "__import__('os').system('true')",
])
def test_evaluate_rejects_with_its_own_error(text):
    with pytest.raises(ExpressionError):
        evaluate(text)


def test_evaluate_magnitude_bound_is_inclusive():
    assert evaluate("1000000 * 1000000 * 1000") == 10**15
    with pytest.raises(ExpressionError):
        evaluate("1000000 * 1000000 * 10000")


HOSTILE = ["9" * 100_000, "(" * 100_000, "-" * 100_000 + "1", "1" + "*999999999" * 10_000, "9**9**9**9",
           "1e999999999", "((((((((((" * 25 + "1", "999999999 * 999999999 / 3"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_expressions_are_rejected_fast(text):
    start = time.perf_counter()
    with pytest.raises(ExpressionError):
        evaluate(text)
    assert time.perf_counter() - start < 0.2  # generous: a shared CPU; a blow-up takes seconds


@pytest.mark.parametrize("text, value", [
    ("7/" * 127 + "7", Fraction(1, 7**126)),                    # 255 characters, a 107-digit denominator
    ("0." + "0" * 22 + "1" + " / 3" * 50, Fraction(1, 10**23 * 3**50)),  # a 24-digit literal, the most allowed
])
def test_heavy_but_valid_expressions_are_exact_and_fast(text, value):
    start = time.perf_counter()
    assert evaluate(text) == value
    assert time.perf_counter() - start < 0.2  # generous: a shared CPU; a blow-up takes seconds


def _safe(text):
    try:
        result = evaluate(text)
    except ExpressionError:
        return None
    assert isinstance(result, Fraction) and abs(result) <= 10**15
    return result


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=600), st.text(alphabet="0123456789+-*/().,$ ×÷−e^", max_size=600)))
def test_evaluate_never_raises_another_error_and_is_quick(text):
    start = time.perf_counter()
    _safe(text)
    assert time.perf_counter() - start < 0.2  # generous: a shared CPU; a blow-up takes seconds


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789+-*/()=., Theanswris\n", max_size=2000))
def test_find_steps_survives_any_text_quickly(text):
    start = time.perf_counter()
    steps = find_steps(text, [(i, i + 1) for i in range(len(text))])
    assert time.perf_counter() - start < 0.5
    assert all(text[slice(*s.char_span)] and s.token_indices for s in steps)


def test_find_steps_on_a_hundred_thousand_digit_number_is_quick():
    text = "x = 5 * 3 = " + "9" * 100_000 + ". The answer is " + "9" * 100_000 + "."
    start = time.perf_counter()
    find_steps(text, [(i, i + 1) for i in range(len(text))])
    assert time.perf_counter() - start < 1.0


# --- steps -------------------------------------------------------------------------------------------

def test_cot_steps_values_expressions_spans_and_tokens(tok):
    r = rollout(tok, COT)
    steps = find_steps(r.text, r.offsets)
    assert [(s.value, s.lhs, s.is_final) for s in steps] == [
        ("15", "5 * 3", False), ("27", "12 + 15", False), ("27", None, True)]
    # "bought = 5 * 3 = " is 17 characters, so "15" is [17, 19); "The answer is " starts at 43.
    assert [s.char_span for s in steps] == [(17, 19), (39, 41), (57, 59)]
    assert all(r.text[slice(*s.char_span)] == s.value for s in steps)
    assert [pieces(r, s.token_indices) for s in steps] == [["1", "5"], ["2", "7"], ["2", "7"]]


def test_comt_rollout_has_the_final_answer_as_its_only_step(tok):
    r = rollout(tok, COMT)
    steps = find_steps(r.text, r.offsets)
    assert len(steps) == 1 and steps[0].is_final and steps[0].value == "27" and steps[0].lhs is None
    assert pieces(r, steps[0].token_indices) == ["2", "7"]


def test_no_answer_no_steps_and_strict_extraction_needs_the_sentence(tok):
    r = rollout(tok, "Multiply the bags.")
    assert find_steps(r.text, r.offsets) == []
    r = rollout(tok, "Add the apples: 20")
    assert [s.value for s in find_steps(r.text, r.offsets, "flexible")] == ["20"]
    assert find_steps(r.text, r.offsets, "strict") == []


def test_flexible_answer_on_a_result_is_one_final_step_keeping_its_expression(tok):
    r = rollout(tok, "left = 27 - 7 = 20")
    steps = find_steps(r.text, r.offsets)
    # "= 27 - 7" is the start of an expression, not a result: only "= 20" is a step, and it is the answer.
    assert [(s.value, s.lhs, s.is_final) for s in steps] == [("20", "27 - 7", True)]


@pytest.mark.parametrize("text, expected", [
    ("x = 5 * 3", []),                                         # expression, no result
    ("if a <= 5 and b >= 6 and c == 7", []),                   # comparisons
    ("3 apples + 4 apples = 7 apples", [("7", None)]),         # no arithmetic right before "="
    ("bought = 15 apples", [("15", None)]),                    # a stated value without an expression
    ("15. 15 + 12 = 27 apples", [("27", "15 + 12")]),          # sentence number dropped from the LHS
    ("So <<3+4=7>>7 apples", [("7", "3+4")]),                  # GSM8K calculator annotation
    ("1,200 + 300 = 1,500 apples", [("1500", "1,200 + 300")]),
    ("10 / 4 = 2.5. Next", [("2.5", "10 / 4")]),
    ("3 - 5 = -2 apples", [("-2", "3 - 5")]),
    ("cost: $5 * 3 = $15 total", [("15", "$5 * 3")]),
    ("sum = 4 + 5 = 9\n- next item", [("9", "4 + 5")]),        # a list dash on the next line
])
def test_intermediate_result_patterns(text, expected):
    steps = find_steps(text, [(i, i + 1) for i in range(len(text))], "strict")
    assert [(s.value, s.lhs) for s in steps] == expected


def test_spans_with_a_tokenizer_that_merges_space_and_digits(gpt2_tok):
    r = rollout(gpt2_tok, COT)
    steps = find_steps(r.text, r.offsets)
    assert [s.value for s in steps] == ["15", "27", "27"]
    # Every value is one token here, and it carries the leading space.
    assert [pieces(r, s.token_indices) for s in steps] == [[" 15"], [" 27"], [" 27"]]


def test_every_synthetic_cot_step_is_found_and_right_and_comt_has_only_the_answer(tok):
    problems = generate("ood_steps", 40, seed=0)  # 3-4 events: 3 to 8 steps each
    teacher = RuleTeacher()
    cots, comts = teacher.write(problems, "cot"), teacher.write(problems, "comt")
    for problem, cot, comt in zip(problems, cots, comts, strict=True):
        r = rollout(tok, cot)
        steps = find_steps(r.text, r.offsets)
        intermediate = [s for s in steps if not s.is_final]
        assert [float(s.value) for s in intermediate] == problem.intermediate
        assert all(arithmetic_matches(s.lhs, s.value) for s in intermediate)
        assert steps[-1].is_final and steps[-1].value == problem.gold
        r = rollout(tok, comt)
        assert [(s.value, s.is_final) for s in find_steps(r.text, r.offsets)] == [(problem.gold, True)]


# --- rollouts ----------------------------------------------------------------------------------------

def test_rollouts_from_sampled_strip_padding(tok):
    ids = tok("The answer is 27.", add_special_tokens=False).input_ids + [tok.eos_token_id]
    n = len(ids)
    tokens = torch.full((2, n + 2), tok.pad_token_id)
    tokens[0, :n] = torch.tensor(ids)
    tokens[1, :2] = torch.tensor(ids[:2])
    logprobs = torch.full((2, n + 2), -0.5)
    sampled = Sampled(tokens, logprobs, torch.tensor([n, 2]), torch.tensor([True, False]))
    rollouts = rollouts_from_sampled(tok, sampled, [3, 3])
    assert [len(r.token_ids) for r in rollouts] == [n, 2]
    assert rollouts[0].text == "The answer is 27." + EOS and rollouts[0].finished and not rollouts[1].finished
    assert rollouts[0].problem_index == 3 and rollouts[0].logprobs == (-0.5,) * n
    with pytest.raises(ValueError, match="problem indices"):
        rollouts_from_sampled(tok, sampled, [0])


def test_rollout_rejects_empty_and_mismatched_lists():
    with pytest.raises(ValueError, match="at least one token"):
        Rollout(0, "", (), (), True, ())
    with pytest.raises(ValueError, match="must match"):
        Rollout(0, "a", (1,), (-0.1, -0.2), True, ((0, 1),))


# --- confidence --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, expected", [
    ("geometric_mean", math.sqrt(0.8 * 0.5)),  # exp((ln .8 + ln .5) / 2) = sqrt(.4) = 0.63246
    ("min", 0.5),
    ("first", 0.8),
])
def test_confidence_kinds(kind, expected):
    logprobs = [math.log(0.99), math.log(0.8), math.log(0.5), math.log(0.99)]
    assert step_confidence(logprobs, [1, 2], kind) == pytest.approx(expected)


def test_confidence_clamps_positive_noise_and_rejects_bad_input():
    assert step_confidence([1e-7], [0]) == 1.0
    with pytest.raises(ValueError, match="at least one token"):
        step_confidence([0.0], [])
    with pytest.raises(ValueError, match="geometric_mean, min, first"):
        step_confidence([0.0], [0], "mean")


# --- correctness -------------------------------------------------------------------------------------

@pytest.mark.parametrize("lhs, value, expected", [
    ("5 * 3", "15", True),
    ("5 * 3", "16", False),
    ("10 / 3", "3.33", True),    # |3.3333 - 3.33| = 0.0033 <= 0.005, half a unit of the last digit
    ("10 / 3", "3.3", True),     # 0.033 <= 0.05
    ("2 / 3", "0.66", False),    # 0.0067 > 0.005: truncated, not rounded
    ("7 / 2", "3", False),       # whole numbers must be exact
    ("1 / 0", "5", None),        # cannot be evaluated
    ("5 * 3", "9" * 100, None),  # absurd written value
])
def test_arithmetic_matches(lhs, value, expected):
    assert arithmetic_matches(lhs, value) is expected


SLIP = "bought = 5 * 3 = 16. total = 12 + 16 = 28. The answer is 28."


@pytest.mark.parametrize("mode, problem, expected", [
    # Neither 16 nor 28 is among the gold values [15, 27, 27]: 5 * 3 = 16 and the right sum 12 + 16 = 28 are
    # both wrong for this problem.
    ("problem", PROBLEM, [False, False, False]),
    # Without gold values, the dataflow check: 5 * 3 = 16 is wrong arithmetic; 12 + 16 = 28 is right
    # arithmetic feeding a wrong answer (28 != 27), so not judged: nothing says it is the step that failed.
    ("problem", QUESTION_ONLY, [False, None, False]),
    ("outcome", PROBLEM, [False, False, False]),
    # A question without quantities: no step uses the problem's inputs; the answer is still judged.
    ("problem", Problem("p1", "q", "27"), [None, None, False]),
])
def test_step_correctness_modes(tok, mode, problem, expected):
    r = rollout(tok, SLIP)
    assert step_correctness(find_steps(r.text, r.offsets), problem, False, mode) == expected


def test_bare_values_are_judged_only_against_gold_values(tok):
    r = rollout(tok, "bought = 15. total = 12 + 15 = 27. The answer is 27.")
    steps = find_steps(r.text, r.offsets)
    assert step_correctness(steps, PROBLEM, True, "problem") == [True, True, True]
    assert step_correctness(steps, QUESTION_ONLY, True, "problem") == [None, True, True]
    assert step_correctness(steps, PROBLEM, True, "outcome") == [True, True, True]
    # Restating a quantity of the question is not a step.
    r = rollout(tok, "apples = 12. total = 12 + 15 = 27. The answer is 27.")
    assert step_correctness(find_steps(r.text, r.offsets), PROBLEM, True, "problem") == [None, True, True]
    with pytest.raises(ValueError, match="problem, outcome"):
        step_correctness(steps, PROBLEM, True, "gold")


@pytest.mark.parametrize("text, expected", [
    ("bought = 5 * 3 = 15. bought = 3 * 5 = 15. The answer is 27.", [True, None, False]),   # a repeat
    ("x = 12 * 1 = 12. y = 12 + 0 = 12. The answer is 27.", [None, None, False]),          # identities
    ("1 + 1 = 2. 40 + 2 = 42. The answer is 27.", [None, None, False]),                     # no input used
    ("bought = 5 * 3 = 15. total = 12 + 15 = 27. The answer is 27.", [True, True, False]),
])
def test_steps_that_do_not_work_on_the_problem_are_not_judged(tok, text, expected):
    r = rollout(tok, text)
    assert step_correctness(find_steps(r.text, r.offsets), PROBLEM, False, "problem") == expected


def test_dataflow_check_judges_only_steps_that_feed_the_answer(tok):
    # 12 + 3 = 15 is true arithmetic over the question's numbers but leads nowhere: not judged.
    r = rollout(tok, "a = 12 + 3 = 15. bought = 5 * 3 = 15. b = 12 + 5 = 17. The answer is 17.")
    steps = find_steps(r.text, r.offsets)
    # Were 17 the right answer, 12 + 5 = 17 would be a right step; with 17 wrong it is not judged.
    assert step_correctness(steps, QUESTION_ONLY, True, "problem") == [None, None, True, True]
    assert step_correctness(steps, QUESTION_ONLY, False, "problem") == [None, None, None, False]


def test_the_answer_is_read_at_its_sentence_not_at_a_later_copy(tok):
    r = rollout(tok, "The answer is 27. So 20 + 7 = 27.")
    final = [s for s in find_steps(r.text, r.offsets) if s.is_final]
    assert len(final) == 1 and final[0].char_span == (14, 16)


# --- calibration -------------------------------------------------------------------------------------

@pytest.mark.parametrize("score, c, correct, expected", [
    ("signed", 0.8, True, 0.8),
    ("signed", 0.8, False, -0.8),
    ("brier", 0.8, True, 0.96),                  # 1 - (0.8 - 1)^2
    ("brier", 0.8, False, 0.36),                 # 1 - 0.8^2
    ("log", 0.8, True, math.log(0.8)),           # -0.2231
    ("log", 0.8, False, math.log(0.2)),          # -1.6094
    ("log", 1.0, False, math.log(0.01)),         # clipped to 1 - eps: -4.6052
    ("log", 0.0, True, math.log(0.01)),          # clipped to eps
])
def test_step_scores(score, c, correct, expected):
    assert step_score(c, correct, score, log_eps=0.01) == pytest.approx(expected)


def test_step_shares_add_up_to_the_aggregate():
    assert step_shares([0.8, -0.4], "mean") == pytest.approx([0.4, -0.2])
    assert step_shares([0.8, -0.4], "sum") == [0.8, -0.4]
    assert step_shares([0.8, -0.4, -0.4], "min") == [0.0, -0.4, 0.0]
    assert step_shares([], "mean") == [] and step_shares([], "min") == []
    with pytest.raises(ValueError, match="mean, min, sum"):
        step_shares([1.0], "median")


def slip_rollout(tok, problem_index=0):
    """SLIP with value confidences 0.9 (16), 0.6 (28 = 12 + 16), 0.3 (answer 28); other tokens 0.99."""
    confidence = {SLIP.index("16"): 0.9, SLIP.index("28"): 0.6, SLIP.rindex("28"): 0.3}
    ids = tok(SLIP, add_special_tokens=False).input_ids + [tok.eos_token_id]
    _, offsets = decode_with_offsets(tok, ids)
    # A token inside a two-digit value [start, start + 2) gets that value's probability.
    probability = [next((c for start, c in confidence.items() if start <= a < start + 2), 0.99) for a, _ in offsets]
    return Rollout.from_tokens(tok, problem_index, ids, [math.log(p) for p in probability], True)


@pytest.mark.parametrize("score, aggregation, expected", [
    # Judged: (c=.9, wrong arithmetic), (c=.3, wrong answer); 12 + 16 = 28 (c=.6) is right arithmetic on
    # the way to a wrong answer, which the dataflow check leaves unjudged.
    ("signed", "mean", (-0.9 - 0.3) / 2),                                     # -0.6
    ("signed", "min", -0.9),
    ("signed", "sum", -1.2),
    ("signed", "per_gold_step", -1.0),                                        # -1.2 / (1 + 0 right), clipped
    ("brier", "mean", ((1 - 0.81) + (1 - 0.09)) / 2),                         # 0.55
    ("log", "mean", (math.log(0.1) + math.log(0.7)) / 2),                     # -1.32963
])
def test_calibration_term_by_hand(tok, score, aggregation, expected):
    value, = calibration_term([slip_rollout(tok)], [QUESTION_ONLY], calibration_score=score,
                              step_aggregation=aggregation)
    assert value == pytest.approx(expected)


# --- outcome, format and the combined reward -------------------------------------------------------

def batch(tok):
    """Three rollouts: the slip (wrong, 3 steps), a right CoMT answer at c=0.8, a cut-off one without an answer."""
    comt = rollout(tok, COMT, lambda i, p: math.log(0.8) if p in ("2", "7") else math.log(0.99))
    cut = rollout(tok, "Multiply the bags", finished=False)
    return [slip_rollout(tok), comt, cut]


def test_outcome_and_format_terms(tok):
    rollouts = batch(tok)
    assert outcome_term(rollouts, [PROBLEM]) == [0.0, 1.0, 0.0]
    assert format_term(rollouts, [PROBLEM]) == [1.0, 1.0, 0.0]
    unfinished = rollout(tok, COMT, finished=False)
    assert format_term([unfinished], [PROBLEM]) == [0.0]  # cut at the limit: not well formed
    assert outcome_term([unfinished], [PROBLEM]) == [1.0]  # but the answer still counts


@pytest.mark.parametrize("text, meta, gold, expected", [
    # An AQuA option, by letter and by its text: the rollout's answer is read as eval reads it.
    ("The speed is 40 km/h. The answer is (B).", {"answer_type": "choice", "choices": ["30", "40", "50"]}, "B", 1.0),
    ("So the train goes 40 km/h, which is option 40.", {"answer_type": "choice", "choices": ["30 km/h", "40 km/h"]},
     "B", 1.0),
    ("The answer is C.", {"answer_type": "choice", "choices": ["30", "40", "50"]}, "B", 0.0),
    # A TabMWP text answer.
    ("The answer is Tuesday.", {"answer_type": "text"}, "tuesday", 1.0),
    # A benchmark's own tolerance (GSM-Hard style float golds).
    ("The answer is 3244047.1.", {"rel_tol": 1e-6}, "3244047.0999999996", 1.0),
])
def test_the_outcome_reward_reads_answers_as_eval_scores_them(tok, text, meta, gold, expected):
    problem = Problem("q", "A train goes 120 km in 3 hours. How fast?", gold, meta)
    r = rollout(tok, text)
    assert outcome_term([r], [problem]) == [expected]
    scored = score([problem], [Completion(r.written, list(r.token_ids), list(r.logprobs), True)], tok)
    assert scored[0].correct == bool(expected)


CCRL = {"weights": {"outcome": 1.0, "calibration": 0.5, "format": 0.1}}


def test_sequence_reward_weighted_total_and_logged_means(tok):
    out = compute_rewards(batch(tok), [QUESTION_ONLY], RewardConfig.from_mapping(CCRL))
    # slip: 0 + .5 * -1 (per_gold_step: -.9 - .3 over 1 + 0 right steps, clipped) + .1 * 1 = -0.4 ;
    # comt: 1 + .5 * .8 + .1 = 1.5 ; cut: no answer, scored as a wrong answer at confidence 1: .5 * -1 = -0.5.
    assert out.totals == pytest.approx([-0.4, 1.5, -0.5])
    assert out.scores().tolist() == pytest.approx(out.totals)
    assert out.terms["calibration"] == pytest.approx([-1.0, 0.8, -1.0])
    assert out.metrics() == pytest.approx({"reward/outcome": 1 / 3, "reward/calibration": -1.2 / 3,
                                           "reward/format": 2 / 3, "reward/total": 0.6 / 3})
    rewards = out.token_rewards(length=40)
    assert rewards.shape == (3, 40)
    # The whole total sits at each rollout's last token.
    for row, n in enumerate(out.lengths):
        assert rewards[row, n - 1].item() == pytest.approx(out.totals[row])
        assert rewards[row].abs().sum().item() == pytest.approx(abs(out.totals[row]))


def test_step_reward_places_each_share_at_its_value_and_adds_up(tok):
    rollouts = batch(tok)
    out = compute_rewards(rollouts, [QUESTION_ONLY], RewardConfig.from_mapping({**CCRL, "granularity": "step"}))
    rewards = out.token_rewards()
    slip = rollouts[0]
    last_digit = [s.token_indices[-1] for s in find_steps(slip.text, slip.offsets)]
    # .5 * the scores scaled into the range (-.9 - .3 = -1.2 -> -1): -.9 -> -.375, -.3 -> -.125; 12 + 16 = 28
    # is not judged; EOS: outcome 0 + format .1.
    expected = {last_digit[0]: -0.375, last_digit[2]: -0.125, out.lengths[0] - 1: 0.1}
    for index in range(out.lengths[0]):
        assert rewards[0, index].item() == pytest.approx(expected.get(index, 0.0), abs=1e-7)
    # Right CoMT answer: .5 * .8 at the answer's last digit, 1 + .1 at EOS.
    comt = rollouts[1]
    answer_end = find_steps(comt.text, comt.offsets)[0].token_indices[-1]
    assert rewards[1, answer_end].item() == pytest.approx(0.4)
    assert rewards[1, out.lengths[1] - 1].item() == pytest.approx(1.1)
    # No answer: the missing answer's share at the last token.
    assert rewards[2, out.lengths[2] - 1].item() == pytest.approx(-0.5)
    assert rewards.sum(1).tolist() == pytest.approx(out.totals, abs=1e-6)  # float32 rows
    assert out.totals == pytest.approx([-0.4, 1.5, -0.5])


def test_token_rewards_stay_float32_when_a_true_half_precision_sets_the_default_dtype(tok):
    """Lightning's bf16-true sets torch's default dtype for the training step; rewards must not round to it."""
    out = compute_rewards(batch(tok), [QUESTION_ONLY], RewardConfig.from_mapping({**CCRL, "granularity": "step"}))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        rewards = out.token_rewards()
    finally:
        torch.set_default_dtype(default)
    assert rewards.dtype == torch.float32
    assert rewards.sum(1).tolist() == pytest.approx(out.totals, abs=1e-6)


def test_outcome_only_logs_calibration_without_optimising_it(tok):
    config = RewardConfig.from_mapping({"weights": {"outcome": 1.0, "calibration": 0.0, "format": 0.1}})
    out = compute_rewards(batch(tok), [QUESTION_ONLY], config)
    assert out.totals == pytest.approx([0.1, 1.1, 0.0])
    assert out.metrics()["reward/calibration"] == pytest.approx(-1.2 / 3)


def test_token_rewards_width_must_fit_and_batch_must_not_be_empty(tok):
    out = compute_rewards(batch(tok), [QUESTION_ONLY], RewardConfig.from_mapping(CCRL))
    with pytest.raises(ValueError, match="shorter than the longest rollout"):
        out.token_rewards(length=3)
    with pytest.raises(ValueError, match="empty batch"):
        compute_rewards([], [QUESTION_ONLY], RewardConfig.from_mapping(CCRL))


@pytest.mark.parametrize("node, message", [
    ({"weights": {"outcome": float("nan")}}, "reward.weights.outcome=nan: must be a finite number"),
    ({"weights": {"outcome": "1"}}, "reward.weights.outcome='1': must be a finite number"),
    ({"weights": {"bonus": 1.0}}, "reward.weights.bonus: unknown reward term"),
    ({"weights": {}}, "reward.weights={}"),
    ({"weights": {"outcome": 1.0}, "granularity": "token"}, "reward.granularity='token': choose one of sequence, step"),
    ({"weights": {"outcome": 1.0}, "calibration_score": "breir"}, "reward.calibration_score='breir'"),
    ({"weights": {"outcome": 1.0}, "correctness": "gold"}, "reward.correctness='gold'"),
    ({"weights": {"outcome": 1.0}, "confidence": "mean"}, "reward.confidence='mean'"),
    ({"weights": {"outcome": 1.0}, "step_aggregation": "max"}, "reward.step_aggregation='max'"),
    ({"weights": {"outcome": 1.0}, "extraction": "loose"}, "reward.extraction='loose'"),
    ({"weights": {"outcome": 1.0}, "log_eps": 0.5}, "reward.log_eps=0.5: must be a number in (0, 0.5)"),
])
def test_reward_config_errors_name_the_key(node, message):
    with pytest.raises(ValueError) as error:
        RewardConfig.from_mapping(node)
    assert message in str(error.value) and "\n" not in str(error.value)
