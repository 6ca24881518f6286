"""Eval measures the calibration of the intermediate results a model states, as CCRL judges them."""

from __future__ import annotations

import math

import pytest

from cmt.data.problem import Problem
from cmt.eval.calibration import step_calibration
from cmt.eval.evaluate import Completion, evaluate_completions
from cmt.generation import decode_with_offsets
from cmt.models import bundled_path, load_tokenizer

TOKENIZER = load_tokenizer(str(bundled_path("tiny")))
PROBLEM = Problem("p0", "Mia has 12 apples. She buys 5 bags with 3 apples in each. How many?", "27",
                  {"intermediate": [15, 27]})


def completion(text: str, confidence: dict[str, float]) -> Completion:
    """``text`` tokenized, each token of the value written after ``= `` in ``confidence`` (its first
    occurrence) at that probability, 0.99 elsewhere."""
    ids = TOKENIZER(text, add_special_tokens=False).input_ids + [TOKENIZER.eos_token_id]
    _, offsets = decode_with_offsets(TOKENIZER, ids)
    spans = [(text.index(f"= {value}") + 2, len(value), c) for value, c in confidence.items()]
    probability = [next((c for at, n, c in spans if at <= a < at + n), 0.99) for a, _ in offsets]
    return Completion(text, ids, [math.log(p) for p in probability], finished=True)


def test_eval_reports_intermediate_step_calibration():
    right = completion("bought = 5 * 3 = 15. total = 12 + 15 = 27. The answer is 27.", {"15": 0.8, "27": 0.6})
    slipped = completion("bought = 5 * 3 = 16. total = 12 + 16 = 28. The answer is 28.", {"16": 0.95, "28": 0.5})
    plan = completion("Multiply the bags by the apples. The answer is 27.", {})
    values, scored = evaluate_completions(TOKENIZER, [PROBLEM] * 3, [right, slipped, plan])
    # The answers are not steps; 16 and 28 are not among the gold values [15, 27]: wrong.
    assert [s.step_correct for s in scored] == [[True, True], [False, False], []]
    assert scored[0].step_confidences == pytest.approx([0.8, 0.6], abs=1e-6)
    assert scored[1].step_confidences[0] == pytest.approx(0.95, abs=1e-6)
    assert values["intermediate_steps"] == pytest.approx(4 / 3)
    assert values["step_accuracy"] == pytest.approx(0.5)
    # One of four judged steps is wrong above 0.9 confidence.
    assert values["overconfident_step_error_rate"] == pytest.approx(0.25)
    assert values["step_ece"] == pytest.approx(step_calibration(
        [0.8, 0.6, 0.95, 0.5], [True, True, False, False], 3)["step_ece"])


def test_step_calibration_by_hand():
    values = step_calibration([0.95, 0.2, 0.7], [False, False, True], outputs=2)
    assert values["intermediate_steps"] == 1.5
    assert values["step_accuracy"] == pytest.approx(1 / 3)
    assert values["confidence_right_steps"] == pytest.approx(0.7)
    assert values["confidence_wrong_steps"] == pytest.approx(0.575)
    assert values["overconfident_step_error_rate"] == pytest.approx(1 / 3)
    # Bins (0.9, 1]: conf .95, acc 0; (0.1, 0.2]: conf .2, acc 0; (0.6, 0.7]: conf .7, acc 1 -> each 1/3 weight.
    assert values["step_ece"] == pytest.approx((0.95 + 0.2 + 0.3) / 3)
    empty = step_calibration([], [], outputs=3)
    assert empty["intermediate_steps"] == 0 and math.isnan(empty["step_ece"]) and math.isnan(empty["step_accuracy"])
