"""The limits of an RL step and of eval: their bare parts done directly, with nothing around them.

An RL step's two parts:

1. one batched ``model.generate`` (transformers, KV cache) of the step's rollouts: the same prompts,
   group size, maximum length and sampling (temperature, no top-k/top-p);
2. one forward + backward over the generated sequences, in the step's micro-batches, with a per-token
   log-prob loss on the completion tokens.

Our step also scores, runs the reference model for the KL term and steps the optimizer, so its time over
the sum of these two says how much the step's plumbing (and KL) costs on top of the unavoidable work.

Eval's part: greedy ``model.generate`` over the eval's problems in its batches (the same order and size),
and, timed apart, the prefill of those batches alone (one forward each), the share no decoding loop can
win back. Both eval sides run the same model code, so this floor bounds what either can reach.
"""

from __future__ import annotations

import time
from typing import Any

from perf import data, models
from perf.measure import median, sync


def generate_and_backward(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float,
                          micro_batch_size: int, device: str) -> dict[str, float]:
    """Time one batched ``generate`` and one forward + backward over its output; returns seconds and tokens."""
    import torch

    from cmt.generation import left_pad

    inputs = left_pad(tokenizer, prompts, device)
    eos = sorted({tokenizer.eos_token_id, tokenizer.pad_token_id} - {None})
    model.eval()
    sync(device)
    started = time.perf_counter()
    with torch.no_grad():
        sequences = model.generate(**inputs, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                   max_new_tokens=max_new_tokens, eos_token_id=eos,
                                   pad_token_id=tokenizer.pad_token_id, use_cache=True)
    sync(device)
    generate_s = time.perf_counter() - started
    width = inputs["input_ids"].shape[1]
    completion = sequences[:, width:]
    # Completion tokens up to and including the first EOS count; what generate pads after it does not.
    ended = torch.isin(completion, torch.tensor(eos, device=completion.device)).long().cumsum(1)
    mask = ((ended == 0) | ((ended == 1) & torch.isin(completion, torch.tensor(eos, device=completion.device))))
    mask = mask.long()
    return {"generate_s": generate_s,
            **forward_backward(model, sequences, inputs["attention_mask"], mask, temperature, micro_batch_size,
                               device)}


def forward_backward(model, sequences, prompt_mask, mask, temperature: float, micro_batch_size: int,
                     device: str) -> dict[str, float]:
    """Time one forward + backward over ``sequences`` (left-padded prompts, then completions) in micro-batches,
    with a per-token log-prob loss on the completion tokens ``mask`` marks; gradients are cleared after.

    Returns:
        ``forward_backward_s`` and the mean ``completion_tokens`` per row.
    """
    import torch

    completion = sequences[:, prompt_mask.shape[1]:]
    attention = torch.cat([prompt_mask, mask], dim=1)
    model.train()
    sync(device)
    started = time.perf_counter()
    for first in range(0, sequences.shape[0], micro_batch_size):
        rows = slice(first, first + micro_batch_size)
        logits = model(input_ids=sequences[rows], attention_mask=attention[rows],
                       logits_to_keep=completion.shape[1] + 1).logits[:, :-1].float()
        logprobs = torch.log_softmax(logits / temperature, -1).gather(-1, completion[rows, :, None]).squeeze(-1)
        loss = -(logprobs * mask[rows]).sum() / mask.sum().clamp(min=1)
        loss.backward()
    sync(device)
    backward_s = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    return {"forward_backward_s": backward_s, "completion_tokens": float(mask.sum(1).float().mean())}


def greedy_generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int,
                    device: str) -> dict[str, float]:
    """Time greedy ``generate`` over ``prompts`` in eval's batches, and the batches' prefill on its own."""
    import torch

    from cmt.eval.evaluate import longest_first
    from cmt.generation import left_pad

    order = longest_first(tokenizer, prompts)
    batches = [left_pad(tokenizer, [prompts[i] for i in order[first:first + batch_size]], device)
               for first in range(0, len(order), batch_size)]
    eos = sorted({tokenizer.eos_token_id, tokenizer.pad_token_id} - {None})
    model.eval()
    seconds = {"eval_generate_s": 0.0, "eval_prefill_s": 0.0}
    with torch.no_grad():
        for inputs in batches:
            sync(device)
            started = time.perf_counter()
            model(**inputs, logits_to_keep=1)
            sync(device)
            prefilled = time.perf_counter()
            model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos,
                           pad_token_id=tokenizer.pad_token_id, use_cache=True)
            sync(device)
            seconds["eval_prefill_s"] += prefilled - started
            seconds["eval_generate_s"] += time.perf_counter() - prefilled
    return seconds


def bare_parts(settings: dict[str, Any], workdir: str) -> dict[str, Any]:
    """The median over ``limit_repeats`` runs (after one warm-up run) of the RL step's two bare parts and
    their sum, and of eval's greedy generate and prefill."""
    s, e = settings["rl"], settings["eval"]
    device = settings["device"]
    model, tokenizer = models.load(f"{workdir}/model", settings["dtype"], device)
    problems = data.synthetic_problems(int(s["prompts_per_step"]), int(settings["seed"]))
    prompts = [data.render(p.question, tokenizer) for p in problems for _ in range(int(s["group_size"]))]
    eval_prompts = [data.render(p.question, tokenizer) for p in data.gsm8k_problems(e["data"], int(e["n"]))]
    runs = []
    for _ in range(int(s["limit_repeats"]) + 1):
        run = generate_and_backward(model, tokenizer, prompts, int(s["max_new_tokens"]), float(s["temperature"]),
                                    int(s["micro_batch_size"]), device)
        run.update(greedy_generate(model, tokenizer, eval_prompts, int(e["max_new_tokens"]), int(e["batch_size"]),
                                   device))
        runs.append(run)
    runs = runs[1:]
    result = {key: median([r[key] for r in runs]) for key in runs[0]}
    result["limit_s"] = median([r["generate_s"] + r["forward_backward_s"] for r in runs])
    result["repeats"] = len(runs)
    return result
