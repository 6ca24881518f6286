"""Plan, then execute (`cmt.trace`) with the bundled tiny model generating for real: the cut at the answer
sentence, the cue, RL rollouts whose prompt is prompt + plan + cue, and eval reading the protocol saved
beside a checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from cmt.artifacts import checkpoint_dir
from cmt.data.prompts import render_prompt
from cmt.data.synthetic import generate
from cmt.errors import ConfigError
from cmt.eval.traced import evaluate_traced, hf_generate
from cmt.generation import decode_with_offsets
from cmt.models import save_model
from cmt.modules.rl import RLModule
from cmt.rl.config import validate_rl_config
from cmt.stages import evaluate as eval_stage
from cmt.stages.common import StageContext
from cmt.stages.pipeline import step_config
from cmt.stages.rl import trace_protocol
from cmt.trace import PROTOCOL_FILE, TraceProtocol, cut_plan, generate_traced
from cmt.validation import validate_config

PLAN_EXECUTE = TraceProtocol("plan_execute", "The answer is", "\nExecution:")
TEMPLATE = "Question: {question}\nAnswer:"


def _ids(tokenizer, text, eos=True):
    return tokenizer(text, add_special_tokens=False).input_ids + ([tokenizer.eos_token_id] if eos else [])


@pytest.mark.parametrize("text, eos, plan", [
    # Cut where the answer sentence starts (ignoring case); the space before it goes too.
    (" Multiply the bags by the apples in each. Add them. The answer is 27.", True,
     " Multiply the bags by the apples in each. Add them."),
    (" Add them. the answer is 5. The answer is 5.", True, " Add them."),
    # No answer sentence: cut at EOS.
    (" Add the apples found to the apples Mia had.", True, " Add the apples found to the apples Mia had."),
    # Cut at the length limit: the whole text is the plan.
    (" Subtract the apples given to", False, " Subtract the apples given to"),
])
def test_a_plan_is_cut_where_its_answer_sentence_starts_or_at_eos(tiny, text, eos, plan):
    _, tokenizer = tiny
    ids = _ids(tokenizer, text, eos)
    kept, cut = cut_plan(tokenizer, ids, "The answer is")
    assert cut == plan
    # The kept tokens spell the plan (trailing whitespace aside) and no more.
    assert decode_with_offsets(tokenizer, ids[:kept])[0].rstrip() == plan
    assert kept < len(ids) or not eos


def test_two_phases_with_the_tiny_model_continue_prompt_plus_plan_plus_cue(tiny):
    model, tokenizer = tiny
    problems = generate("train", 3, seed=5)
    prompts = [render_prompt(p.question, TEMPLATE) for p in problems]
    generate_fn = hf_generate(model, tokenizer, max_new_tokens=24, batch_size=4)
    traced = generate_traced(generate_fn, tokenizer, prompts, PLAN_EXECUTE)
    assert len(traced) == 3
    for prompt, t in zip(prompts, traced, strict=True):
        assert t.prompt == prompt + t.plan + "\nExecution:"
        assert "the answer is" not in t.plan.lower()
        assert len(t.plan_token_ids) == len(t.plan_logprobs)
        # The execution is what the model writes after prompt + plan + cue (greedy: the same again).
        again = generate_fn([t.prompt], 1)[0]
        assert again.token_ids == t.completion.token_ids
    # direct: one phase, the prompt's own completion.
    direct = generate_traced(generate_fn, tokenizer, prompts, TraceProtocol())
    assert [t.prompt for t in direct] == prompts and all(t.plan == "" for t in direct)
    assert [t.completion.token_ids for t in direct] == [c.token_ids for c in generate_fn(prompts, 1)]


def test_rl_rollouts_under_plan_execute_are_executions_whose_prompt_holds_the_plan(tiny, cfg_factory):
    model, tokenizer = tiny
    cfg = cfg_factory(["rl=grpo", "rl.prompts_per_step=2", "rl.group_size=2", "rl.mini_batch_size=2",
                       "rl.micro_batch_size=1", "rl.max_new_tokens=12", "rl.kl_coef=0.0"])
    problems = generate("train", 2, seed=4)
    module = RLModule(model, tokenizer, problems, [], lambda q: render_prompt(q, TEMPLATE), cfg.rl,
                      validate_rl_config(cfg.rl, cfg.reward), lambda params: torch.optim.AdamW(params, lr=1e-3),
                      trace=PLAN_EXECUTE)
    module.generator.manual_seed(0)
    rollouts, sampled, inputs = module.sampler.rollouts(problems)
    assert inputs["input_ids"].shape[0] == 4 == len(rollouts)  # one prompt per rollout: its own plan
    for row, r in enumerate(rollouts):
        prompt = tokenizer.decode(inputs["input_ids"][row][inputs["attention_mask"][row].bool()])
        assert prompt.startswith(render_prompt(problems[row // 2].question, TEMPLATE))
        assert prompt.endswith("\nExecution:")
        assert r.problem_index == row // 2
        # The rollout's log-probs are the policy's on the execution, given that prompt.
        assert len(r.token_ids) == int(sampled.lengths[row]) and all(x <= 0 for x in r.logprobs)
    batch, metrics = module.score(problems)  # the update's tensors line each rollout up with its own prompt
    assert batch.input_ids.shape[0] == 4 and torch.equal(batch.owner, torch.arange(4))
    assert metrics["train/steps_per_rollout"] >= metrics["train/intermediate_steps_per_rollout"] >= 0


def test_the_protocol_is_saved_and_loaded_and_bad_values_are_one_line_errors(tmp_path):
    assert TraceProtocol.load(tmp_path) == TraceProtocol() == TraceProtocol.load(None)
    PLAN_EXECUTE.save(tmp_path)
    assert TraceProtocol.load(tmp_path) == PLAN_EXECUTE
    (tmp_path / PROTOCOL_FILE).write_text(json.dumps({"name": "zigzag"}))
    with pytest.raises(ValueError, match="unknown trace 'zigzag'"):
        TraceProtocol.load(tmp_path)
    with pytest.raises(ConfigError, match=r"^stage.trace='both': choose one of plan_execute, direct$"):
        TraceProtocol.from_mapping({"trace": "both"})
    with pytest.raises(ConfigError, match=r"^stage.execution_cue=' ': must be a non-blank string"):
        TraceProtocol.from_mapping({"trace": "plan_execute", "execution_cue": " "})


def test_stage_configs_choose_the_trace_per_method(cfg_factory):
    assert trace_protocol(cfg_factory(["stage=ccrl"])) == PLAN_EXECUTE
    assert trace_protocol(cfg_factory(["stage=rl"])).name == "direct"  # the CoT baseline answers in one go
    assert trace_protocol(cfg_factory(["stage=ccrl", "stage.trace=direct"])).name == "direct"
    # The default pipeline's steps, as the pipeline runs them; its stage.trace reaches the ccrl step.
    assert trace_protocol(step_config(cfg_factory([]), "ccrl")) == PLAN_EXECUTE
    assert trace_protocol(step_config(cfg_factory(["stage.trace=direct"]), "ccrl")).name == "direct"
    assert trace_protocol(step_config(cfg_factory([]), "rl")).name == "direct"
    with pytest.raises(ConfigError, match=r"stage.trace='plan'"):
        validate_config(cfg_factory(["stage=ccrl", "stage.trace=plan"]))
    with pytest.raises(ConfigError, match=r"^stage.chat_execution_cue=''"):
        validate_config(cfg_factory(["stage=ccrl", "stage.chat_execution_cue=''"]))
    with pytest.raises(ConfigError, match=r"^stage.stages.ccrl.trace='plan'"):
        validate_config(cfg_factory(["stage.trace=plan"]))
    with pytest.raises(ConfigError, match=r"^stage.stages.ccrl.plan_end=''"):
        validate_config(cfg_factory(["stage.stages.ccrl.plan_end=''"]))


def test_eval_generates_a_method_the_way_its_checkpoint_says(tiny, cfg_factory):
    """stage=eval reads trace.json beside the checkpoint: the saved output is plan + cue + execution."""
    model, tokenizer = tiny
    cfg = cfg_factory(["stage=eval", "eval.methods=[comt_sft,comt_ccrl]", "benchmark.eval_n=2",
                       "eval.max_new_tokens=12", "logger=none"])
    for name in ("comt_sft", "comt_ccrl"):
        save_model(model, tokenizer, checkpoint_dir(cfg, name))
    PLAN_EXECUTE.save(checkpoint_dir(cfg, "comt_ccrl"))
    metrics = eval_stage.run(StageContext(cfg=cfg, logger=None, run_id="t"))
    saved = Path(cfg.paths.output_dir) / "predictions"
    predictions = {name: [json.loads(line) for path in sorted((saved / name).glob("*.jsonl"))
                          for line in path.read_text().splitlines()] for name in ("comt_sft", "comt_ccrl")}
    assert predictions["comt_sft"] and len(predictions["comt_sft"]) == len(predictions["comt_ccrl"])
    assert all("\nExecution:" not in p["output"] for p in predictions["comt_sft"])
    assert all("\nExecution:" in p["output"] for p in predictions["comt_ccrl"])
    # Both phases' tokens count as output (each phase may write up to max_new_tokens), and so does the cue.
    assert all(p["output_tokens"] > 12 or not p["truncated"] for p in predictions["comt_ccrl"])
    assert all(math.isfinite(v) for k, v in metrics.items() if k.endswith("/accuracy"))
    # The same weights evaluated directly and under the protocol give different outputs.
    problems = generate("id", 2, seed=0)
    prompts = [render_prompt(p.question, TEMPLATE) for p in problems]
    _, direct = evaluate_traced(model, tokenizer, problems, prompts, TraceProtocol(), 12, 2)
    _, planned = evaluate_traced(model, tokenizer, problems, prompts, PLAN_EXECUTE, 12, 2)
    assert [s.output for s in direct] != [s.output for s in planned]


def test_a_chat_template_student_gets_the_chat_cue(tiny, cfg_factory):
    _, tokenizer = tiny
    chat = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    chat.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    cfg = cfg_factory(["stage=ccrl"])
    assert trace_protocol(cfg, chat).cue == cfg.stage.chat_execution_cue
    assert trace_protocol(cfg, tokenizer).cue == "\nExecution:"  # the tiny model has no template
    plain = cfg_factory(["stage=ccrl", "prompt.use_chat_template=false"])
    assert trace_protocol(plain, chat).cue == "\nExecution:"
