"""`python run.py` end to end on the bundled tiny model, shrunk to seconds: the real CLI, real files."""

import json
import subprocess
import sys

import pytest

from tests.conftest import FAST, ROOT

pytestmark = pytest.mark.slow


def _run(tmp_path, *overrides, logger="none", artifacts=None):
    args = [f"paths.artifacts={artifacts or tmp_path / 'artifacts'}", f"paths.results={tmp_path}/results",
            f"hydra.run.dir={tmp_path}/job", *[o for o in FAST if not o.startswith("logger=")], f"logger={logger}",
            *overrides]
    env = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=env)


def test_default_pipeline_writes_rows_predictions_and_an_offline_wandb_run(tmp_path):
    out = _run(tmp_path, logger="wandb")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert {(r["method"], r["split"]) for r in rows} == {
        (m, s) for m in ("base", "comt_sft", "comt_ccrl")
        for s in ("id", "ood_templates", "ood_steps", "ood_numbers", "ood_renamed")}
    assert all(r["n"] == 8 and 0 <= r["accuracy"] <= 1 for r in rows)
    assert all(r["train_time_s"] > 0 for r in rows if r["method"] != "base")
    assert {r["stage"] for r in rows} == {"pipeline"}  # the job's stage, though its eval step wrote them
    assert len(list((tmp_path / "job" / "predictions" / "comt_sft").glob("*.jsonl"))) == 5
    assert list((tmp_path / "job" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert "comt_ccrl" in out.stdout and "ood_renamed" in out.stdout


def test_sft_without_teach_names_the_command_that_makes_its_input(tmp_path):
    out = _run(tmp_path, "stage=cot_sft")
    assert out.returncode != 0
    assert "run `python run.py stage=teach`" in out.stderr


@pytest.fixture(scope="module")
def cot_sft(tmp_path_factory):
    """Artifacts of ``stage=teach`` then ``stage=cot_sft`` (CSV-logged), shared by the tests that start from them."""
    root = tmp_path_factory.mktemp("cot_sft")
    assert _run(root, "stage=teach").returncode == 0
    out = _run(root, "stage=cot_sft", logger="csv")
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((root / "job" / "csv").glob("version_*/metrics.csv"))
    return root / "artifacts"


def test_eval_on_its_own_finds_the_cot_sft_checkpoint_and_its_training_cost(tmp_path, cot_sft):
    """``stage=eval`` on its own reads what the model cost from the training record beside the checkpoint."""
    (record,) = cot_sft.glob("**/cot_sft/training.json")
    training = json.loads(record.read_text())
    assert training["train_time_s"] > 0 and training["train_tokens"] > 0
    out = _run(tmp_path, "stage=eval", "eval.methods=[base,cot_sft]", artifacts=cot_sft)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows} == {"base", "cot_sft"}
    assert all((r["train_time_s"], r["train_tokens"]) == (training["train_time_s"], training["train_tokens"])
               for r in rows if r["method"] == "cot_sft")
    assert all(r["train_time_s"] is None for r in rows if r["method"] == "base")


def test_a_method_declared_in_the_stage_config_trains_from_its_parent_and_is_evaluated(tmp_path, cot_sft):
    """CCRL from the CoT-SFT checkpoint: a new method made by overriding what conf/stage/ccrl.yaml declares."""
    out = _run(tmp_path, "stage=ccrl", "stage.parent=cot_sft", "stage.method=cot_ccrl", "rl.steps=1",
               "rl.val_interval=1", artifacts=cot_sft)
    assert out.returncode == 0, out.stderr[-3000:]
    (folder,) = cot_sft.glob("**/cot_ccrl")
    assert "cot_ccrl: 1 RL steps" in out.stdout and f"from {folder.parent / 'cot_sft' / 'model'}" in out.stdout
    assert json.loads((folder / "model" / "trace.json").read_text())["name"] == "plan_execute"
    out = _run(tmp_path, "stage=eval", "eval.methods=[cot_ccrl]", artifacts=cot_sft)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert {(r["method"], r["stage"]) for r in rows} == {("cot_ccrl", "eval")} and rows[0]["train_time_s"] > 0
    missing = _run(tmp_path, "stage=eval", "eval.methods=[cot_ccrll]", artifacts=cot_sft)
    assert missing.returncode != 0 and "no cot_ccrll checkpoint" in missing.stderr


def test_ccrl_logs_every_rl_step(tmp_path):
    """Each RL step is a whole sample-score-update round: every one reaches the logger, not one in
    ``trainer.log_every_n_steps`` (10 by default, which left a 16-step run with a single row)."""
    assert _run(tmp_path, "stage=teach").returncode == 0
    assert _run(tmp_path, "stage=comt_sft").returncode == 0
    out = _run(tmp_path, "stage=ccrl", "rl.steps=3", "rl.val_interval=3", logger="csv")
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = (tmp_path / "job" / "csv").glob("version_*/metrics.csv")
    header, *lines = path.read_text().splitlines()
    column = header.split(",").index("reward/total")
    assert sum(1 for line in lines if line.split(",")[column]) == 3
