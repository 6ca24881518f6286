"""W&B runs to result rows: plain summary/config dicts as the public API returns them; run filters; the
wandb command's offline path (tables from the local store)."""

from __future__ import annotations

import importlib.util

import pytest

from cmt.results.store import ROW_FIELDS
from cmt.results.table import paper_table
from cmt.results.wandb_report import ReportUnavailable, config_value, create_report, rows_from_run, run_filters

NESTED_CONFIG = {"experiment_name": "paper_main", "sweep_name": None, "seed": 1, "model": {"name": "qwen3_4b"},
                 "teacher": {"name": "rule"}, "stage": {"name": "pipeline"}}


def summary(method, accuracy, ece=0.1):
    """Summary metrics as `cmt.stages.evaluate` logs them for GSM8K and ASDiv."""
    return {f"val/{method}/gsm8k/test/accuracy": accuracy, f"val/{method}/gsm8k/test/ece": ece,
            f"val/{method}/asdiv/test/accuracy": accuracy - 0.2, f"val/{method}/asdiv/test/n": 200}


def test_rows_from_run_reads_identity_and_one_row_per_evaluation():
    raw = {**summary("comt_ccrl", 0.9), **summary("cot_sft_rl", 0.8),
           "train/loss": 0.3, "val/loss": 1.2, "_runtime": 12.0, "val/comt_ccrl/gsm8k/test/histogram": [1, 2],
           "val/comt_ccrl/svamp/test/ece": 0.2}  # no accuracy: not a row
    rows = rows_from_run(raw, NESTED_CONFIG, "abc123", "2026-02-01T00:00:00")
    assert len(rows) == 4
    assert all(set(ROW_FIELDS) <= set(row) for row in rows)
    (row,) = [r for r in rows if r["method"] == "comt_ccrl" and r["benchmark"] == "gsm8k"]
    assert row["accuracy"] == 0.9 and row["ece"] == 0.1 and row["split"] == "test"
    assert row["model"] == "qwen3_4b" and row["experiment"] == "paper_main" and row["seed"] == 1
    assert row["teacher"] == "rule" and row["stage"] == "pipeline" and row["run_id"] == "abc123"
    assert row["created_at"] == "2026-02-01T00:00:00" and row["git_sha"] is None
    assert "histogram" not in row
    (asdiv,) = [r for r in rows if r["method"] == "comt_ccrl" and r["benchmark"] == "asdiv"]
    assert asdiv["n"] == 200 and asdiv["ece"] is None


def test_config_values_nested_flat_or_wrapped():
    assert config_value(NESTED_CONFIG, "model.name") == "qwen3_4b"
    assert config_value({"model.name": "llama"}, "model.name") == "llama"
    assert config_value({"model": {"value": {"name": "qwen"}}}, "model.name") == "qwen"
    assert config_value({"seed": {"value": 3, "desc": None}}, "seed") == 3
    assert config_value(NESTED_CONFIG, "model.size") is None
    assert config_value({"model": "tiny"}, "model.name") is None


def test_rows_from_runs_build_the_same_tables():
    rows = []
    for seed, (ours, baseline) in enumerate(((0.90, 0.80), (0.92, 0.84))):
        config = {**NESTED_CONFIG, "seed": seed}
        rows += rows_from_run({**summary("comt_ccrl", ours), **summary("cot_sft_rl", baseline)}, config, f"r{seed}")
    table = paper_table(rows, paper="never")
    (line,) = [x for x in table.lines if x.method == "comt_ccrl"]
    cells = dict(zip((c.label for c in table.columns), line.cells, strict=True))
    assert cells["gsm8k"].mean == pytest.approx(91.0) and cells["gsm8k"].delta == pytest.approx(9.0)
    assert cells["id_avg"].mean == pytest.approx(91.0) and cells["ood_avg"].mean == pytest.approx(71.0)


def test_run_filters():
    assert run_filters() is None
    assert run_filters(experiment="paper_main") == {
        "$or": [{"config.experiment_name": "paper_main"}, {"group": "paper_main"}]}
    both = run_filters(experiment="e", sweep="s")
    assert both == {"$and": [{"$or": [{"config.experiment_name": "e"}, {"group": "e"}]},
                             {"$or": [{"config.sweep_name": "s"}, {"group": "s"}]}]}


def test_report_without_wandb_workspaces_says_what_to_install():
    if importlib.util.find_spec("wandb_workspaces") is not None:
        pytest.skip("wandb-workspaces is installed: creating a report would reach W&B")
    with pytest.raises(ReportUnavailable, match="pip install wandb-workspaces"):
        create_report("ent/cmt", [], ["paper_main"], "experiment_name", "| table |", "title")
