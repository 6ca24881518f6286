"""The real SmolLM2-135M-Instruct through every stage: conversion from its GGUF file, CoT-SFT and CoMT-SFT
with LoRA and without, RL with GRPO and PPO, and eval on the local GSM8K and SVAMP copies with its chat
template. Shrunk to seconds a run (tests/real_model/conftest.py); the assertions are about real effects
(weights moved, losses fell, adapters round-trip, answers parse), not about accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from cmt import gguf
from cmt.artifacts import checkpoint_dir
from cmt.data.prompts import render_prompt
from cmt.data.sft import collate, tokenize_pairs
from cmt.models import load_model, locate_source, resolve_source
from cmt.modules.sft import SFTModule
from cmt.stages import run as run_stage
from tests.conftest import ROOT
from tests.real_model.conftest import DATA, RL_SMALL, SOURCE

QUESTION = "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?"


def tensors(folder: Path, names=None) -> dict[str, torch.Tensor]:
    """The tensors of a folder's safetensors weights (all, or those in ``names``)."""
    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, "pt") as handle:
            out.update({k: handle.get_tensor(k) for k in handle.keys() if names is None or k in names})
    return out


# --- the conversion -------------------------------------------------------------------------------------------

def test_two_processes_converting_at_once_make_one_complete_folder(converted):
    print(f"conversion by two processes at once: {converted.seconds:.1f} s\n" + "\n".join(converted.outputs))
    lines = [line for out in converted.outputs for line in out.splitlines()]
    assert sum(line.startswith("converting ") for line in lines) == 1, converted.outputs
    record = json.loads((converted.folder / gguf.SOURCE_FILE).read_text())
    file = Path(locate_source({"source": SOURCE}))
    assert record["sha256"] == gguf.file_sha256(file)
    assert converted.folder.name == f"{file.stem}-{record['sha256'][:gguf.HASH_CHARS]}"
    names = {p.name for p in converted.folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert not [p for p in converted.cache.iterdir() if p.name.startswith(".")], "a scratch folder was left"
    assert "quantization_config" not in json.loads((converted.folder / "config.json").read_text())
    # A later resolve reads the folder: no second conversion.
    assert resolve_source({"source": SOURCE, "cache_dir": str(converted.cache)}) == str(converted.folder)


def test_the_converted_weights_are_the_files_own_tensors(converted):
    """Two tensors that transformers stores unpermuted, compared with the gguf package's own dequantisation
    of the file (one Q8_0, one Q4_1): bit for bit."""
    from gguf import GGUFReader, dequantize

    by_name = {t.name: t for t in GGUFReader(locate_source({"source": SOURCE})).tensors}
    saved = tensors(converted.folder, {"model.embed_tokens.weight", "model.layers.0.mlp.down_proj.weight"})
    for ours, theirs in (("model.embed_tokens.weight", "token_embd.weight"),
                         ("model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight")):
        tensor = by_name[theirs]
        assert torch.equal(saved[ours], torch.from_numpy(dequantize(tensor.data, tensor.tensor_type))), ours


def test_the_model_answers_in_its_chat_template(smol_config):
    cfg = smol_config("chat", "stage=eval")
    model, tokenizer = load_model(cfg.model)
    prompt = render_prompt("What is 2 + 3?", "{question}", tokenizer, cfg.prompt.use_chat_template)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    output = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)
    assert "5" in answer, answer


# --- SFT ------------------------------------------------------------------------------------------------------

def test_lora_sft_lowers_the_loss_on_a_fixed_batch_and_moves_every_adapter(smol_config):
    cfg = smol_config("fixed", "stage=cot_sft")
    model, tokenizer = load_model(cfg.model)
    prompts = [render_prompt(QUESTION.replace("3 boxes", f"{n} boxes"), cfg.prompt.template, tokenizer)
               for n in range(3, 5)]
    targets = [f"The boxes hold {n} * 4 = {4 * n} apples. After eating 2, {4 * n} - 2 = {4 * n - 2} are left. "
               f"The answer is {4 * n - 2}." for n in range(3, 5)]
    batch = collate(tokenize_pairs(tokenizer, prompts, targets, 192), tokenizer.pad_token_id)
    module = SFTModule(model, lambda params: torch.optim.AdamW(params, lr=1e-3))
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = module.optimizer_factory(params=list(trainable.values()))
    model.train()
    losses = []
    for _ in range(3):
        loss = module(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    assert all(not torch.equal(before[n], p) for n, p in trainable.items())


@pytest.fixture(scope="module")
def sft_runs(smol_config):
    """CoT-SFT and CoMT-SFT on the rule teacher's synthetic traces, with LoRA (tag lora) and without (tag full)."""
    runs = {}
    for tag, extra in (("lora", []), ("full", ["model.lora.enabled=false", "model.hparams.sft_lr=2e-5"])):
        run_stage(smol_config(tag, "stage=teach", *extra))
        for method in ("cot_sft", "comt_sft"):
            cfg = smol_config(tag, f"stage={method}", *extra)
            runs[tag, method] = (cfg, run_stage(cfg))
    return runs


@pytest.mark.parametrize("method", ["cot_sft", "comt_sft"])
def test_lora_sft_saves_adapters_that_load_and_merge_to_the_same_logits(sft_runs, converted, method):
    cfg, metrics = sft_runs["lora", method]
    folder = checkpoint_dir(cfg, method)
    assert metrics[f"{method}/train_tokens"] > 0
    assert (folder / "adapter_config.json").is_file() and not (folder / "model.safetensors").exists()
    assert (folder / "adapter_model.safetensors").stat().st_size < 30e6
    adapters = tensors(folder)
    # PEFT starts every lora_B at zero: trained ones are not.
    assert all(t.abs().sum() > 0 for n, t in adapters.items() if "lora_B" in n)
    model, tokenizer = load_model(cfg.model, folder)
    assert tokenizer.chat_template and hasattr(model, "merge_and_unload")
    ids = tokenizer(render_prompt(QUESTION, cfg.prompt.template, tokenizer), return_tensors="pt").input_ids
    with torch.no_grad():
        adapted = model(ids).logits
        base_logits = load_model({**cfg.model, "lora": {"enabled": False}})[0](ids).logits
        merged = model.merge_and_unload()(ids).logits
    assert not torch.allclose(adapted, base_logits, atol=1e-4)
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["cot_sft", "comt_sft"])
def test_full_sft_moves_every_weight_and_keeps_the_chat_template(sft_runs, converted, method):
    cfg, _ = sft_runs["full", method]
    folder = checkpoint_dir(cfg, method)
    base, trained = tensors(converted.folder), tensors(folder)
    assert set(trained) == set(base)
    assert [n for n in base if torch.equal(base[n], trained[n])] == []
    assert (folder / "chat_template.jinja").read_text() == (converted.folder / "chat_template.jinja").read_text()


# --- RL -------------------------------------------------------------------------------------------------------

def _rl(smol_config, tag: str, stage: str, preset: str, *extra: str) -> tuple[dict, Path, Path]:
    """Run an RL stage of ``tag``'s SFT model; returns its metrics, the parent's folder and its own."""
    cfg = smol_config(tag, f"stage={stage}", f"rl={preset}", *RL_SMALL, *extra)
    metrics = run_stage(cfg)
    method, parent = ("comt_ccrl", "comt_sft") if stage == "ccrl" else ("cot_sft_rl", "cot_sft")
    return metrics, checkpoint_dir(cfg, parent), checkpoint_dir(cfg, method)


def test_grpo_ccrl_moves_the_full_comt_model(sft_runs, smol_config):
    """CCRL's reward (outcome + step calibration + format) differs between a group's rollouts, so GRPO has a
    signal and the policy moves."""
    metrics, parent, trained = _rl(smol_config, "full", "ccrl", "grpo", "model.lora.enabled=false",
                                   "model.hparams.rl_lr=1e-5")
    assert metrics["comt_ccrl/train_zero_variance_groups"] < 1 or metrics["comt_ccrl/train_policy_loss"] != 0
    before, after = tensors(parent), tensors(trained)
    assert [n for n in before if not torch.equal(before[n], after[n])], "GRPO changed no weight"


def test_ppo_rl_trains_the_lora_cot_model_and_its_critic(sft_runs, smol_config):
    metrics, parent, trained = _rl(smol_config, "lora", "rl", "ppo")
    assert torch.isfinite(torch.tensor(metrics["cot_sft_rl/train_value_loss"]))
    before, after = tensors(parent), tensors(trained)
    assert set(after) == set(before)
    assert all(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n)


# --- eval -----------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not DATA.is_dir(), reason=f"no local benchmark copies at {DATA} (set CMT_DATA_DIR)")
@pytest.mark.parametrize("benchmark", ["gsm8k", "svamp"])
def test_eval_on_the_local_benchmark_copies_parses_answers(smol_config, benchmark):
    cfg = smol_config("eval", "stage=eval", f"benchmark={benchmark}", f"paths.data_dir={DATA}", "benchmark.eval_n=2",
                      "eval.max_new_tokens=40")
    metrics = run_stage(cfg)
    rows = [json.loads(line) for line in (Path(cfg.paths.results) / "runs.jsonl").read_text().splitlines()]
    (row,) = [r for r in rows if r["benchmark"] == benchmark]
    assert row["n"] == 2 and row["method"] == "base"
    assert row["extraction_fail_rate"] < 1, "no answer parsed"
    (predictions,) = (Path(cfg.paths.output_dir) / "predictions" / "base").glob(f"{benchmark}-*.jsonl")
    outputs = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(outputs) == 2 and all(o["output"].strip() for o in outputs)
    # The model answers as the assistant and stops at its end-of-turn token; it never starts a new turn.
    assert not any("<|im_start|>" in o["output"] for o in outputs)
    assert any(o["predicted"] is not None for o in outputs)
    assert f"base/{benchmark}/{row['split']}/accuracy" in metrics


def test_run_py_evaluates_smollm2(converted, tmp_path):
    """The whole CLI once: `python run.py model=smollm2 stage=eval` on one split of the synthetic benchmark."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    out = subprocess.run(
        [sys.executable, "run.py", "model=smollm2", "stage=eval", "benchmark.eval_n=2",
         "benchmark.splits=[{split:id,tag:id}]", "eval.max_new_tokens=16",
         "logger=none", f"paths.model_cache={converted.cache}", f"paths.artifacts={tmp_path}/artifacts",
         f"paths.results={tmp_path}/results", f"hydra.run.dir={tmp_path}/job"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert {r["model"] for r in rows} == {"smollm2"} and [r["n"] for r in rows] == [2]
    assert "converting" not in out.stdout
