"""The performance harness's own logic (perf/), without the peers: settings, timing, table, bare parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perf import agreement, flops, measure, report, runner
from perf.settings import apply_override, load_settings


def test_settings_load_apply_gpu_block_and_reject_unknown_keys():
    cpu = load_settings(overrides=["rl.steps=7", "sft.lr=2e-3", "threads=1"])
    assert cpu["rl"]["steps"] == 7 and cpu["sft"]["lr"] == pytest.approx(2e-3) and cpu["threads"] == 1
    assert Path(cpu["eval"]["data"]).is_absolute()
    gpu = load_settings(device="cuda", model="qwen2.5-0.5b-shape")
    assert gpu["eval"]["n"] > cpu["eval"]["n"] and gpu["model"] == "qwen2.5-0.5b-shape"
    with pytest.raises(ValueError, match="unknown setting"):
        apply_override(dict(cpu), "rl.not_a_key=1")
    with pytest.raises(ValueError, match="key=value"):
        apply_override(dict(cpu), "rl.steps")


def test_a_missing_peer_is_one_line_naming_the_extra_and_our_side_still_runs(monkeypatch, tmp_path):
    with pytest.raises(runner.PeerMissingError, match=r'pip install -e "\.\[perf\]"'):
        runner.require_peer("no_such_peer_module_xyz", "Some Peer")
    monkeypatch.setitem(runner.BENCHES, "sft", ("ours", "peer", "no_such_peer_module_xyz", "Some Peer"))
    ran = []

    def fake_worker(bench, side, settings, workdir, timeout=None):
        ran.append((bench, side))
        return {"tokens_per_s": 10.0, "peak_rss_mb": 100.0} if bench != "prepare" else {"params": 1}

    monkeypatch.setattr(runner, "run_worker", fake_worker)
    said = []
    results = runner.run(["sft"], load_settings(), workdir=tmp_path, say=said.append)
    assert ("sft", "ours") in ran and ("sft", "peer") not in ran
    missing = [line for line in said if "not installed" in line]
    assert len(missing) == 1 and "\n" not in missing[0] and '.[perf]' in missing[0]
    rows = report.build_rows(results)
    assert rows[0].ours == 10.0 and rows[0].peer is None and rows[0].met is None


def test_bare_parts_time_a_generate_and_a_backward_on_a_tiny_random_model():
    from perf import limit, models

    model, tokenizer = models.build("tiny-random", "float32", "cpu", seed=0)
    parts = limit.generate_and_backward(model, tokenizer, ["Question: Mia has 3 apples.\nAnswer:"] * 2 + ["Hi"],
                                        max_new_tokens=4, temperature=1.0, micro_batch_size=2, device="cpu")
    assert parts["generate_s"] > 0 and parts["forward_backward_s"] > 0
    assert 1 <= parts["completion_tokens"] <= 4
    assert all(p.grad is None for p in model.parameters())  # gradients are cleared after timing
    greedy = limit.greedy_generate(model, tokenizer, ["Question: Mia has 3 apples.\nAnswer:", "Hi", "Leo"],
                                   max_new_tokens=4, batch_size=2, device="cpu")
    assert greedy["eval_generate_s"] > 0 and greedy["eval_prefill_s"] > 0


def test_table_rows_ratios_goals_and_json_fields(tmp_path):
    results = {
        "_model": {"model": {"params": 3}},
        "sft": {"ours": {"tokens_per_s": 300.0, "peak_rss_mb": 500.0},
                "peer": {"tokens_per_s": 200.0, "peak_rss_mb": 600.0}},
        "rl": {"ours": {"step_s": 1.0, "peak_rss_mb": 700.0, "generate_s": 0.4, "score_s": 0.2, "update_s": 0.4},
               "peer": {"step_s": 2.0, "peak_rss_mb": 650.0}},
        "limit": {"ours": {"limit_s": 0.8, "generate_s": 0.3, "forward_backward_s": 0.5, "eval_generate_s": 2.0,
                           "eval_prefill_s": 0.5}},
        "eval": {"ours": {"problems_per_s": 30.0, "seconds": 1.0, "peak_rss_mb": 400.0, "accuracy": 0.5},
                 "peer": {"problems_per_s": 10.0, "seconds": 3.0, "peak_rss_mb": 800.0, "accuracy": 0.5,
                          "generation_match": 1.0,
                          "answer_agreement_flexible": 0.9, "answer_agreement_strict": 1.0}},
        "comt": {"comt": {"tokens_per_example": 50.0, "target_tokens_per_example": 20.0, "fit_s": 5.0},
                 "cot": {"tokens_per_example": 100.0, "target_tokens_per_example": 40.0, "fit_s": 10.0}},
    }
    rows = {(r.section, r.metric): r for r in report.build_rows(results)}
    sft = rows[("1 SFT", "non-padding tokens/s")]
    assert sft.ratio == pytest.approx(1.5) and sft.met is True
    assert rows[("2 RL", "seconds per step")].ratio == pytest.approx(2.0)
    assert rows[("2 RL", "peak RSS MiB")].met is False
    assert rows[("3 RL limit", "step s vs generate + fwd/bwd s")].ratio == pytest.approx(1.25)
    assert rows[("3 RL limit", "step s vs generate + fwd/bwd s")].met is False
    assert rows[("4 Eval", "problems/s")].ratio == pytest.approx(3.0)
    assert rows[("4 Eval", "seconds vs bare generate s")].ratio == pytest.approx(0.5)
    assert rows[("4 Eval", "  lm-eval seconds vs bare generate s")].ratio == pytest.approx(1.5)
    assert rows[("5 CoMT vs CoT", "tokens per training example")].ratio == pytest.approx(0.5)
    assert rows[("5 CoMT vs CoT", "SFT seconds per epoch")].ratio == pytest.approx(0.5)
    table = report.render(list(rows.values()))
    assert "problems/s" in table and table.splitlines()[0].startswith("section")
    doc = report.document(results, load_settings(), list(rows.values()))
    path = report.write(doc, tmp_path / "perf.json")
    loaded = json.loads(path.read_text())
    assert {"created_at", "host", "settings", "model", "results", "table"} <= set(loaded)
    assert all(set(row) == set(report.FIELDS) for row in loaded["table"])
    assert "_model" not in loaded["results"]


def test_timing_window_and_token_counter():
    import torch

    assert measure.window([1.0, 2.0, 4.0], skip=1) == (1.0, 4.0, 2)
    with pytest.raises(ValueError, match="steps ran"):
        measure.window([1.0], skip=1)
    counter = measure.TokenCounter()
    layer = torch.nn.Module()
    layer.forward = lambda input_ids=None, attention_mask=None: input_ids
    counter.attach(layer)
    layer(input_ids=torch.ones(2, 5), attention_mask=torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
    layer(input_ids=torch.ones(1, 3))
    assert [n for _, n in counter.events] == [8, 3]
    assert counter.tokens_between(0.0, float("inf")) == 11
    assert measure.median([3.0, 1.0, 2.0, 10.0]) == 2.5
    assert measure.step_times([1.0, 2.0, 4.0, 7.0], skip=1) == [1.0, 2.0, 3.0]


def test_answer_agreement_lines_up_lm_eval_and_our_extraction():
    assert agreement.peer_value("$1,234.") == "1234" and agreement.peer_value("[invalid]") is None
    assert agreement.same_answer("18", "18.0") and agreement.same_answer(None, None)
    assert not agreement.same_answer("18", None)
    assert agreement.cut_at_stops("x = 5.\n\nQuestion: next") == "x = 5.\n\n"
    rates = agreement.compare(["She has 18 eggs. #### 18\nQuestion: more", "no number"],
                              ["She has 18 eggs. #### 18\n", "no number"], ["18", "[invalid]"], ["18", "[invalid]"])
    assert rates == {"generation_match": 1.0, "answer_agreement_flexible": 1.0, "answer_agreement_strict": 1.0,
                     "peer_answered": 0.5}
    assert agreement.same_text_rate(["a\nb", "c"], ["a\nb", "c "]) == 0.5
    with pytest.raises(ValueError, match="as many"):
        agreement.same_text_rate(["a"], ["a", "b"])


def test_mfu_needs_a_peak_and_counts_backward_three_times():
    assert flops.mfu(1e12, 1.0, None) is None
    assert flops.mfu(1e12, 2.0, 1e12) == pytest.approx(0.5)
    forward = flops.flops_per_token(1000, 2, 8, 4, backward=False)
    assert forward == pytest.approx(2 * 1000 + 2 * 2 * 8 * 4)
    assert flops.flops_per_token(1000, 2, 8, 4, backward=True) == pytest.approx(3 * forward)
    assert flops.peak_flops("cpu", "float32") is None and flops.peak_flops("cpu", "float32", 5e12) == 5e12


def test_dropping_finished_rows_keeps_greedy_outputs_identical():
    """The sampling optimisation measured by the harness (cmt.generation.sample's row compaction)."""
    import torch

    from cmt.generation import left_pad, sample
    from perf import data, models

    model, tokenizer = models.build("tiny", "float32", "cpu")
    prompts = [data.render(p.question, tokenizer) for p in data.synthetic_problems(12, 0)] + ["Mia has", "7 +"]
    inputs = left_pad(tokenizer, prompts)
    kwargs = {"max_new_tokens": 24, "eos_ids": [tokenizer.eos_token_id], "pad_id": tokenizer.pad_token_id}
    compacted = sample(model, **inputs, **kwargs, compact_fraction=0.1)
    full = sample(model, **inputs, **kwargs, compact_fraction=1.0)
    assert len(set(full.lengths.tolist())) > 1  # rows end at different steps, so compaction happened
    assert torch.equal(compacted.tokens, full.tokens) and torch.equal(compacted.lengths, full.lengths)
    assert torch.equal(compacted.finished, full.finished)
    torch.testing.assert_close(compacted.logprobs, full.logprobs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("device", "visible", "expected"), [
    ("cpu", None, ("cpu", None)), ("cuda", None, ("cuda", "0")), ("cuda:2", None, ("cuda", "2")),
    ("cuda:1", "4,5,6", ("cuda", "5")), ("cuda", "3", ("cuda", "3"))])
def test_a_gpu_worker_sees_only_the_gpu_it_measures(device, visible, expected):
    assert runner.one_gpu(device, visible) == expected


def test_the_head_benchmark_runs_both_passes_with_and_without_chunks():
    """`python -m perf.head`'s measurements on a small shape: each pass runs both ways and reports its
    time and the memory it took above the model."""
    from perf import head

    args = head.parse_args(["--vocab", "3000", "--hidden", "64", "--layers", "1", "--batch", "2",
                            "--prompt", "8", "--target", "16", "--chunk", "10", "--repeats", "1"])
    for name in ("sft", "rl"):
        for chunk in (None, 10):
            result = head.measure_one(args, name, chunk)
            assert result["pass"] == name and result["chunk"] == chunk
            assert result["seconds"] > 0 and result["peak_over_model_mb"] >= 0


def test_both_vllm_eval_sides_get_one_set_of_engine_settings_and_a_bad_one_fails_in_one_line():
    from perf import evaluation_vllm

    settings = load_settings(overrides=["eval.batch_size=8", "vllm.kv_cache_memory_bytes=1048576",
                                        "vllm.max_model_len=256", "seed=3"])
    options = evaluation_vllm.engine_options(settings)
    assert options["max_num_seqs"] == 8 and options["kv_cache_memory_bytes"] == 1048576
    assert options["max_model_len"] == 256 and options["dtype"] == "float32" and options["seed"] == 3
    assert options["enforce_eager"] is True  # no CUDA graphs on this CPU
    assert "max_model_len" not in evaluation_vllm.engine_options(load_settings())  # null: the model's own
    with pytest.raises(ValueError, match=r"^vllm\.kv_cache_memory_bytes=0: ") as error:
        load_settings(overrides=["vllm.kv_cache_memory_bytes=0"])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"vllm\.enforce_eager"):
        load_settings(overrides=["vllm.enforce_eager=sometimes"])
    with pytest.raises(ValueError, match="unknown setting"):
        load_settings(overrides=["vllm.block_size=16"])


def test_vllm_eval_rows_compare_with_lm_eval_vllm_and_hf_and_sum_the_engine_memory():
    results = {
        "eval": {"ours": {"problems_per_s": 20.0}, "peer": {"problems_per_s": 10.0, "prompt_match": 1.0}},
        "eval_vllm": {"ours": {"problems_per_s": 30.0, "seconds": 2.0, "generate_s": 1.5, "engine_start_s": 20.0,
                               "peak_rss_mb": 400.0, "peak_tree_rss_mb": 1300.0, "accuracy": 0.25},
                      "peer": {"problems_per_s": 40.0, "seconds": 1.5, "engine_start_s": 25.0, "peak_rss_mb": 500.0,
                               "peak_tree_rss_mb": 1300.0, "accuracy": 0.25, "prompt_match": 1.0,
                               "generation_match": 0.75, "answer_agreement_flexible": 0.5,
                               "answer_agreement_strict": 1.0, "peer_answered": 0.5}},
    }
    rows = {(r.section, r.metric): r for r in report.build_rows(results)}
    versus_vllm = rows[("4 Eval vLLM", "problems/s")]
    assert versus_vllm.ratio == pytest.approx(0.75) and versus_vllm.met is False and versus_vllm.goal == ">= 1.0"
    versus_hf = rows[("4 Eval vLLM", "problems/s vs lm-eval hf")]
    assert versus_hf.ratio == pytest.approx(3.0) and versus_hf.met is True and versus_hf.peer == 10.0
    assert rows[("4 Eval vLLM", "  vs our built-in loop")].ratio == pytest.approx(1.5)
    assert rows[("4 Eval vLLM", "seconds (generation + scoring)")].ratio == pytest.approx(0.75)
    assert rows[("4 Eval vLLM", "  our generation alone s")].ours == 1.5
    memory = rows[("4 Eval vLLM", "peak RSS MiB, engine process included")]
    assert (memory.ours, memory.peer) == (1300.0, 1300.0) and memory.ratio == pytest.approx(1.0)
    assert rows[("4 Eval vLLM", "same generation (cut at lm-eval stops)")].peer == 0.75
    assert rows[("4 Eval vLLM", "same prompt text")].ratio == 1.0
    assert rows[("4 Eval", "same prompt text")].peer == 1.0
    alone = {(r.section, r.metric) for r in report.build_rows({"eval_vllm": results["eval_vllm"]})}
    assert ("4 Eval vLLM", "problems/s") in alone and ("4 Eval vLLM", "problems/s vs lm-eval hf") not in alone


def test_vllm_settings_are_checked_in_one_line_naming_the_key():
    assert load_settings()["vllm"]["trl_sampler"] in ("hf", "vllm")
    for assignment, key in (("vllm.trl_sampler=vllm_server", "vllm.trl_sampler"),
                            ("vllm.kv_cache_memory_bytes=-5", "vllm.kv_cache_memory_bytes"),
                            ("vllm.max_model_len=0.5", "vllm.max_model_len"),
                            ("rl.rollout_is_cap=0.5", "rl.rollout_is_cap")):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")) as error:
            load_settings(overrides=[assignment])
        assert "\n" not in str(error.value)
    assert load_settings(overrides=["vllm.max_model_len=null"])["vllm"]["max_model_len"] is None


def test_vllm_rows_name_the_peers_sampler_and_compare_with_the_built_in_sampler_and_the_bare_parts():
    results = {
        "rl": {"ours": {"step_s": 3.0}, "peer": {"step_s": 6.0, "sampler": "hf"}},
        "rl_vllm": {"ours": {"step_s": 1.5, "peak_rss_mb": 700.0, "peak_tree_rss_mb": 2000.0, "generate_s": 0.5,
                             "sync_s": 0.1, "score_s": 0.4, "update_s": 0.6, "engine_start_s": 30.0},
                    "peer": {"step_s": 6.0, "peak_rss_mb": 1000.0, "sampler": "hf", "same_as": "rl/peer"}},
        "limit_vllm": {"ours": {"limit_s": 1.2, "generate_s": 0.4, "forward_backward_s": 0.7, "sync_s": 0.1}},
    }
    rows = {(r.section, r.metric): r for r in report.build_rows(results)}
    step = rows[("2 RL vLLM", "seconds per step")]
    assert step.ratio == pytest.approx(4.0) and step.met is True and step.peer_name.endswith("transformers generate")
    assert rows[("2 RL vLLM", "  vs ours with the built-in sampler")].ratio == pytest.approx(2.0)
    # The engine's process counts with ours; TRL's own memory is all it has without one.
    memory = rows[("2 RL vLLM", "peak RSS MiB, engine process included")]
    assert (memory.ours, memory.peer, memory.ratio) == (2000.0, 1000.0, pytest.approx(2.0))
    limit = rows[("3 RL vLLM limit", "step s vs vLLM generate + fwd/bwd + sync s")]
    assert limit.ratio == pytest.approx(1.25) and limit.met is False
    assert rows[("3 RL vLLM limit", "  bare weight sync s")].peer == 0.1
    assert rows[("3 RL vLLM limit", "  our weight sync s")].ours == 0.1
    results["rl_vllm"]["peer"] = {"step_s": 2.0, "sampler": "vllm"}
    step = next(r for r in report.build_rows(results) if r.section == "2 RL vLLM" and r.metric == "seconds per step")
    assert step.peer_name == "TRL GRPOTrainer, vLLM colocate" and step.met is False
    del results["rl_vllm"]["peer"]  # TRL not installed: our side alone, no sampler to name
    step = next(r for r in report.build_rows(results) if r.section == "2 RL vLLM" and r.metric == "seconds per step")
    assert (step.peer, step.peer_name, step.met) == (None, "TRL GRPOTrainer", None)


@pytest.mark.parametrize(("sampler", "measured_again"), [("hf", False), ("vllm", True)])
def test_trls_side_with_its_default_sampler_is_measured_once(monkeypatch, tmp_path, sampler, measured_again):
    monkeypatch.setitem(runner.NEEDS, "rl_vllm", ("json", "vLLM rollouts"))  # an importable stand-in for vllm
    monkeypatch.setattr(runner, "require_peer", lambda module, label: None)
    ran = []

    def fake_worker(bench, side, settings, workdir, timeout=None):
        ran.append((bench, side))
        return {"step_s": 2.0, "sampler": settings["vllm"]["trl_sampler"]} if bench != "prepare" else {}

    monkeypatch.setattr(runner, "run_worker", fake_worker)
    results = runner.run(["rl", "rl_vllm"], load_settings(overrides=[f"vllm.trl_sampler={sampler}"]), tmp_path,
                         say=lambda line: None)
    assert (("rl_vllm", "peer") in ran) is measured_again
    assert results["rl_vllm"]["peer"]["step_s"] == 2.0
    assert (results["rl_vllm"]["peer"].get("same_as") == "rl/peer") is not measured_again


def test_a_comparison_needing_a_missing_engine_is_skipped_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(runner.NEEDS, "eval_vllm", ("no_such_engine_module_xyz", "no engine: pip install it"))
    ran = []

    def fake_worker(bench, side, settings, workdir, timeout=None):
        ran.append((bench, side))
        return {"params": 1} if bench == "prepare" else {"problems_per_s": 1.0}

    monkeypatch.setattr(runner, "run_worker", fake_worker)
    said = []
    results = runner.run(["eval_vllm"], load_settings(), workdir=tmp_path, say=said.append)
    assert ran == [("prepare", "model")] and "eval_vllm" not in results
    assert said[-1] == "perf: eval_vllm skipped: no engine: pip install it"
    assert set(runner.NEEDS) == {"rl_vllm", "limit_vllm", "eval_vllm"}


def test_the_tree_rss_counts_a_child_processs_memory():
    import subprocess
    import sys
    import time

    tree = measure.TreeRss(interval=0.05).start()
    own = tree.sample()
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(300 * 2**20); time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while tree.peak_mb < own + 250 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()
    assert tree.stop() >= own + 250


def test_trl_configs_get_the_checkpointing_keyword_their_transformers_has(tmp_path):
    from transformers import TrainingArguments

    from perf.models import trainer_checkpointing

    for enabled in (True, False):
        keyword = trainer_checkpointing(TrainingArguments, enabled)
        args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **keyword)
        assert getattr(args, next(iter(keyword))) is enabled
