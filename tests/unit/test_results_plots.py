"""Plots: reliability bins by hand and against the ECE; every plot writes a real PNG; the plots CLI."""

from __future__ import annotations

import json

import pytest
from matplotlib.image import imread

from cmt.eval.calibration import expected_calibration_error
from cmt.results.plots import (
    accuracy_by_benchmark,
    accuracy_vs_tokens,
    read_predictions,
    reliability_bins,
    reliability_diagram,
)


def rows():
    out = []
    for model in ("qwen", "llama"):
        for method, accuracy, tokens in (("cot_sft_rl", 0.7, 2_000_000), ("comt_ccrl", 0.8, 1_000_000)):
            for seed in (0, 1):
                for benchmark in ("gsm8k", "asdiv"):
                    out.append({"experiment": "main", "model": model, "method": method, "seed": seed,
                                "benchmark": benchmark, "split": "test", "accuracy": accuracy + 0.01 * seed,
                                "train_tokens": tokens})
    return out


def write_predictions(path, pairs):
    path.write_text("".join(json.dumps({"id": str(i), "confidence": c, "correct": k}) + "\n"
                            for i, (c, k) in enumerate(pairs)))
    return path


def assert_png(path):
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(path).shape
    assert height > 100 and width > 100


def test_reliability_bins_by_hand_and_consistent_with_ece():
    confidences = [0.05, 0.0, 0.15, 0.12, 0.3, 0.95, 1.0]
    correct = [False, False, True, False, True, True, True]
    bins = reliability_bins(confidences, correct, 10)
    assert [(b, count) for b, _, _, count in bins] == [(0, 2), (1, 2), (2, 1), (9, 2)]  # 0.3 is in (0.2, 0.3]
    assert bins[0][1:3] == pytest.approx((0.025, 0.0))
    assert bins[1][1:3] == pytest.approx((0.135, 0.5))
    assert bins[3][1:3] == pytest.approx((0.975, 1.0))
    ece = sum(count / len(confidences) * abs(acc - conf) for _, conf, acc, count in bins)
    assert ece == pytest.approx(expected_calibration_error(confidences, correct, 10))


def test_accuracy_plots_write_pngs(tmp_path):
    assert_png(accuracy_by_benchmark(rows(), tmp_path / "bars.png"))
    assert_png(accuracy_vs_tokens(rows(), tmp_path / "sub" / "tokens.png"))
    without_tokens = [{**row, "train_tokens": None} for row in rows()]
    with pytest.raises(ValueError, match="train_tokens"):
        accuracy_vs_tokens(without_tokens, tmp_path / "none.png")
    with pytest.raises(ValueError, match="no result rows"):
        accuracy_by_benchmark([], tmp_path / "empty.png")


def test_reliability_diagram_from_prediction_files(tmp_path):
    a = write_predictions(tmp_path / "a.jsonl", [(0.9, True), (0.8, False), (0.2, False)])
    b = write_predictions(tmp_path / "b.jsonl", [(0.6, True), (0.4, True)])
    assert read_predictions(a) == ([0.9, 0.8, 0.2], [True, False, False])
    assert_png(reliability_diagram({"cot": a, "comt": b}, tmp_path / "reliability.png"))
    six = reliability_diagram({f"split{i}": a for i in range(6)}, tmp_path / "six.png")  # two rows of panels
    assert imread(six).shape[0] > 1.5 * imread(tmp_path / "reliability.png").shape[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "0", "correct": true}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_predictions(bad)
