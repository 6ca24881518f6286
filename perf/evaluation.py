"""Eval throughput: our `cmt.eval.evaluate.evaluate` vs lm-evaluation-harness's gsm8k task on the hf backend.

Both sides: the same model object type and weights, the first ``eval.n`` problems of the local GSM8K test
copy, zero-shot, the same prompt (the project's template is lm-eval's gsm8k ``doc_to_text``; under a
tokenizer's chat template on both sides, lm-eval's ``apply_chat_template``; ``prompt_match`` checks the
texts are equal), greedy decoding, the same maximum new tokens and batch size. lm-eval runs its own gsm8k
task config (filters, metric, stop sequences), pointed at the local file instead of the hub, through
``evaluator.evaluate`` with an ``HFLM`` wrapping the in-memory model. The timed part is generation +
scoring on each side (task and data set-up excluded on both). :mod:`perf.evaluation_vllm` runs the same
comparison with vLLM generating on both sides.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from perf import agreement, data, models
from perf.flops import flops_per_token, mfu, peak_flops
from perf.measure import sync

# Where each of our backends saves its outputs in the work folder (the peer of the same backend reads them).
OUR_OUTPUTS = {"hf": "eval_ours.jsonl", "vllm": "eval_ours_vllm.jsonl"}


def _mfu(settings, model, prompt_tokens: float, output_tokens: float, n: int, seconds: float) -> float | None:
    shape = models.describe(model)
    context = (prompt_tokens + output_tokens) / 2
    flops = n * (prompt_tokens + output_tokens) * flops_per_token(shape["matmul_params"], shape["layers"],
                                                                   shape["hidden"], context, False)
    return mfu(flops, seconds, peak_flops(settings["device"], settings["dtype"], settings.get("peak_flops")))


def save_outputs(path: Path, scored) -> None:
    """Our side's completions (id, output, extracted answer), one JSON line per problem, for the peer to
    compare with its own."""
    with open(path, "w") as handle:
        handle.writelines(json.dumps({"id": record.id, "output": record.output, "predicted": record.predicted}) + "\n"
                          for record in scored)


def ours(settings: dict[str, Any], workdir: str) -> dict[str, Any]:
    """Time `evaluate` (batched greedy generation, extraction, confidence, metrics); saves the outputs."""
    from cmt.eval.evaluate import evaluate

    s = settings["eval"]
    device = settings["device"]
    model, tokenizer = models.load(f"{workdir}/model", settings["dtype"], device)
    problems = data.gsm8k_problems(s["data"], int(s["n"]))
    prompts = [data.render(p.question, tokenizer) for p in problems]
    sync(device)
    started = time.perf_counter()
    values, scored = evaluate(model, tokenizer, problems, prompts, int(s["max_new_tokens"]), int(s["batch_size"]))
    sync(device)
    seconds = time.perf_counter() - started
    save_outputs(Path(workdir) / OUR_OUTPUTS["hf"], scored)
    prompt_tokens = sum(len(x) for x in tokenizer(prompts).input_ids) / len(prompts)
    return {"problems_per_s": len(problems) / seconds, "seconds": seconds, "n": len(problems),
            "accuracy": values["accuracy"], "mean_output_tokens": values["mean_output_tokens"],
            "mfu": _mfu(settings, model, prompt_tokens, values["mean_output_tokens"], len(problems), seconds)}


def task_config(path: str, max_new_tokens: int) -> dict[str, Any]:
    """lm-eval's own gsm8k task config, reading ``path`` (a local jsonl) instead of the hub, zero-shot."""
    import lm_eval
    import yaml

    config = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    config.pop("tag", None)
    config.update({"task": "gsm8k_local", "dataset_path": "json", "dataset_name": None,
                   "dataset_kwargs": {"data_files": {"test": str(path)}}, "test_split": "test",
                   "training_split": None, "fewshot_split": None, "num_fewshot": 0})
    config["generation_kwargs"] = {**config["generation_kwargs"], "max_gen_toks": int(max_new_tokens)}
    return config


def lm_eval(settings: dict[str, Any], workdir: str) -> dict[str, Any]:
    """Time lm-eval's gsm8k on its hf backend (``HFLM`` around the in-memory model); compare with ours."""
    from lm_eval.models.huggingface import HFLM

    s = settings["eval"]
    device = settings["device"]
    model, tokenizer = models.load(f"{workdir}/model", settings["dtype"], device)
    data.gsm8k_problems(s["data"], int(s["n"]))  # the same existence check and message as ours
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=int(s["batch_size"]), device=device,
              max_length=int(model.config.max_position_embeddings))
    return run_lm_eval(lm, settings, tokenizer, Path(workdir) / OUR_OUTPUTS["hf"])


def run_lm_eval(lm, settings: dict[str, Any], tokenizer, ours_file: Path) -> dict[str, Any]:
    """Time lm-eval's ``evaluator.evaluate`` of its gsm8k task (:func:`task_config`) with ``lm``, any backend.

    The chat template is applied as ours applies it: when the tokenizer has one (:func:`perf.data.render`).

    Args:
        lm: An lm-eval model (``HFLM``, ``VLLM``), loaded.
        settings: The harness settings (``eval.n``, ``eval.data``, ``eval.max_new_tokens``, ``device``).
        tokenizer: The tokenizer our side renders prompts with.
        ours_file: Our side's outputs (:func:`save_outputs`); agreement rates are added when it is there.

    Returns:
        Throughput, accuracy, ``prompt_match`` (lm-eval's prompt text is ours) and, with ``ours_file``, the
        :func:`perf.agreement.compare` rates.
    """
    from lm_eval import evaluator
    from lm_eval.tasks import TaskManager, get_task_dict

    s = settings["eval"]
    problems = data.gsm8k_problems(s["data"], int(s["n"]))
    tasks = get_task_dict([task_config(s["data"], int(s["max_new_tokens"]))], TaskManager())
    chat = bool(getattr(tokenizer, "chat_template", None))
    sync(settings["device"])
    started = time.perf_counter()
    results = evaluator.evaluate(lm=lm, task_dict=tasks, limit=int(s["n"]), log_samples=True, bootstrap_iters=0,
                                 verbosity="WARNING", apply_chat_template=chat)
    sync(settings["device"])
    seconds = time.perf_counter() - started
    samples = results["samples"]["gsm8k_local"]
    # One logged sample per (document, filter): the response is the same under every filter.
    by_filter = {f: {r["doc_id"]: r for r in samples if r.get("filter") == f}
                 for f in ("flexible-extract", "strict-match")}
    doc_ids = sorted(by_filter["flexible-extract"])
    raw = [by_filter["flexible-extract"][d]["resps"][0][0] for d in doc_ids]
    contexts = [by_filter["flexible-extract"][d]["arguments"][0][0] for d in doc_ids]
    extracted = {f: [by_filter[f][d]["filtered_resps"][0] if d in by_filter[f] else agreement.INVALID
                     for d in doc_ids] for f in by_filter}
    scores = results["results"]["gsm8k_local"]
    ours_prompts = [data.render(problems[d].question, tokenizer) for d in doc_ids]  # doc_id: the problem's index
    output = {"problems_per_s": len(raw) / seconds, "seconds": seconds, "n": len(raw),
              "accuracy": scores.get("exact_match,flexible-extract"),
              "accuracy_strict": scores.get("exact_match,strict-match"),
              "prompt_match": agreement.same_text_rate(ours_prompts, contexts)}
    if ours_file.is_file():
        our_texts = [json.loads(line)["output"] for line in ours_file.read_text().splitlines()][:len(raw)]
        if len(our_texts) == len(raw):
            output.update(agreement.compare(our_texts, raw, extracted["flexible-extract"], extracted["strict-match"]))
    return output
