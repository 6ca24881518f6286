"""Eval throughput with vLLM generating: ours (``eval.backend=vllm``) vs lm-evaluation-harness's vllm backend.

Ours is the eval stage's vLLM path for a plain (single-phase, CoT-style) checkpoint: the engine started by
`cmt.eval.vllm_backend.load`, greedy generation by its ``generator``, then `cmt.eval.traced.evaluate_generated`
(answer extraction, answer confidence from the engine's log-probs, judged intermediate steps, metrics).
The peer is lm-eval's ``VLLM`` model (``lm_eval.models.vllm_causallms``) under its own gsm8k task config,
run as :func:`perf.evaluation.run_lm_eval` runs the hf backend.

Held equal: the weights (the folder every worker loads), the first ``eval.n`` problems of the local GSM8K
copy, the prompt text (zero-shot; the chat template applied on both sides where the tokenizer has one;
``prompt_match`` checks it), greedy decoding, ``eval.max_new_tokens``, and every engine setting
(:func:`engine_options`: dtype, seed, ``max_model_len``, ``kv_cache_memory_bytes``, ``enforce_eager``,
``max_num_seqs`` = ``eval.batch_size``, tensor parallelism). Both hand the engine all prompts at once (lm-eval
with ``batch_size="auto"``, its setting for vLLM) and let it batch them, and both start their engine under
`cmt.vllm_engine.engine_environment` (on a CPU without ``OMP_NUM_THREADS``: a CPU engine left with the
harness's thread count decoded about 10x slower; and with TorchDynamo off, which only ours, asking for
log-probs, would otherwise use). Timed on each side: generation + scoring, engine start-up excluded (it is
reported apart, ``engine_start_s``).

Not held equal: the stop rules (ours stops at EOS and the pad token; lm-eval's task adds the strings
``Question:``, ``</s>`` and ``<|im_end|>``, so it may stop earlier: ``generation_match`` compares our output
cut at those strings), tokenization (ours adds the tokenizer's special tokens, lm-eval only where the text
lacks a BOS; the same ids for the models here, none of which adds any), decoding (ours decodes the ids with
its tokenizer, the engine's detokenizer off; lm-eval takes the engine's text), lm-eval's sorting of prompts
by length before submitting them, and what each side computes besides the answer (ours: the sampled tokens'
log-probs, answer confidence and the judged intermediate steps; lm-eval: its two regex filters and exact
match).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from perf import data
from perf.evaluation import OUR_OUTPUTS, run_lm_eval, save_outputs
from perf.measure import sync


def engine_options(settings: dict[str, Any]) -> dict[str, Any]:
    """The ``vllm.LLM`` arguments both sides start their engine with.

    The harness's ``vllm`` node read as the eval stage reads the project's ``vllm`` node
    (`cmt.vllm_engine.engine_options`; eager mode forced on a CPU), plus ``max_num_seqs`` = ``eval.batch_size``
    (the most sequences decoded together; the stage leaves it at vLLM's default).
    """
    from cmt import vllm_engine

    s = settings["eval"]
    options = vllm_engine.engine_options(settings["vllm"], settings["dtype"], int(settings["seed"]))
    options["max_num_seqs"] = int(s["batch_size"])
    return options


def ours(settings: dict[str, Any], workdir: str) -> dict[str, Any]:
    """Time our vLLM eval (generation + extraction + confidence + metrics); saves the outputs for the peer."""
    from cmt import vllm_engine
    from cmt.eval import vllm_backend
    from cmt.eval.traced import evaluate_generated
    from cmt.models import load_tokenizer
    from cmt.trace import TraceProtocol

    s = settings["eval"]
    folder = f"{workdir}/model"
    tokenizer = load_tokenizer(folder)
    problems = data.gsm8k_problems(s["data"], int(s["n"]))
    prompts = [data.render(p.question, tokenizer) for p in problems]
    started = time.perf_counter()
    engine = vllm_backend.load(folder, None, engine_options(settings))
    engine_start_s = time.perf_counter() - started
    generate = vllm_backend.generator(engine, tokenizer, int(s["max_new_tokens"]), 0.0, int(settings["seed"]))
    generate_s = []

    def timed_generate(prompts, samples):
        began = time.perf_counter()
        completions = generate(prompts, samples)
        generate_s.append(time.perf_counter() - began)
        return completions

    sync(settings["device"])
    started = time.perf_counter()
    values, scored = evaluate_generated(timed_generate, tokenizer, problems, prompts, TraceProtocol.load(folder))
    sync(settings["device"])
    seconds = time.perf_counter() - started
    vllm_engine.stop(engine.llm)
    save_outputs(Path(workdir) / OUR_OUTPUTS["vllm"], scored)
    return {"problems_per_s": len(problems) / seconds, "seconds": seconds, "n": len(problems),
            "accuracy": values["accuracy"], "mean_output_tokens": values["mean_output_tokens"],
            "generate_s": sum(generate_s), "engine_start_s": engine_start_s}


def lm_eval(settings: dict[str, Any], workdir: str) -> dict[str, Any]:
    """Time lm-eval's gsm8k on its vllm backend with the same engine settings; compare with our vLLM outputs."""
    from lm_eval.models.vllm_causallms import VLLM

    from cmt import vllm_engine
    from cmt.models import load_tokenizer

    s = settings["eval"]
    folder = f"{workdir}/model"
    tokenizer = load_tokenizer(folder)
    data.gsm8k_problems(s["data"], int(s["n"]))  # the same existence check and message as ours
    started = time.perf_counter()
    with vllm_engine.engine_environment():
        lm = VLLM(pretrained=folder, batch_size="auto", max_gen_toks=int(s["max_new_tokens"]),
                  **engine_options(settings))
    engine_start_s = time.perf_counter() - started
    output = run_lm_eval(lm, settings, tokenizer, Path(workdir) / OUR_OUTPUTS["vllm"])
    output["engine_start_s"] = engine_start_s
    vllm_engine.stop(lm.model)
    return output
