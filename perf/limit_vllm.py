"""The limit of an RL step with vLLM rollouts (``rl.rollout=vllm``): its three bare parts, done directly.

1. one ``LLM.generate`` of the step's rollouts on an engine with our settings (started as
   `cmt.stages.rl.rollout_engine` starts ours): the same prompts, ``n`` = group size, maximum length,
   temperature, stop tokens and sampled-token log-probs (the behaviour policy's, which the loss needs);
2. one forward + backward over the generated sequences in the step's micro-batches
   (:func:`perf.limit.forward_backward`, as in the built-in sampler's limit);
3. one full-weight sync into the engine, the least the engine's API takes from another process: the
   state dict written as one safetensors file (no config, no tokenizer), reloaded in place by the worker
   extension ours uses (`cmt.rl.vllm_worker`), and the prefix cache dropped.

Our step also scores, runs the trainer's forward for the importance-sampling ratio and the reference's
for the KL term, and steps the optimizer; its time over the sum of the three says what that costs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from perf import data, models
from perf.limit import forward_backward
from perf.measure import median, sync


def vllm_generate(llm, tokenizer, prompts: list[str], num_samples: int, max_new_tokens: int,
                  temperature: float, seed: int) -> tuple[float, list[list[int]]]:
    """Seconds of one ``llm.generate`` of ``num_samples`` completions per prompt, and the completions' ids
    (prompt by prompt, as our sampler lays them out)."""
    from vllm import SamplingParams, TokensPrompt

    from cmt.eval.vllm_backend import stop_ids
    from cmt.vllm_engine import request_seed

    params = SamplingParams(n=num_samples, temperature=temperature, max_tokens=max_new_tokens, logprobs=0,
                            seed=request_seed(seed), stop_token_ids=stop_ids(tokenizer))
    inputs = [TokensPrompt(prompt_token_ids=ids) for ids in tokenizer(prompts, add_special_tokens=True).input_ids]
    started = time.perf_counter()
    outputs = llm.generate(inputs, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    return seconds, [list(out.token_ids) for request in outputs for out in request.outputs]


def padded(tokenizer, prompts: list[str], completions: list[list[int]], num_samples: int, device: str):
    """(sequences, prompt mask, completion mask): left-padded prompts, each repeated ``num_samples`` times,
    followed by their completions right-padded to the longest."""
    import torch

    from cmt.generation import left_pad

    inputs = left_pad(tokenizer, prompts, device)
    width = max(1, max(len(c) for c in completions))
    tokens = torch.full((len(completions), width), int(tokenizer.pad_token_id), dtype=torch.long, device=device)
    mask = torch.zeros_like(tokens)
    for row, ids in enumerate(completions):
        tokens[row, :len(ids)] = torch.tensor(ids, dtype=torch.long, device=device)
        mask[row, :len(ids)] = 1
    ids = inputs["input_ids"].repeat_interleave(num_samples, 0)
    return torch.cat([ids, tokens], 1), inputs["attention_mask"].repeat_interleave(num_samples, 0), mask


def sync_weights(llm, model, folder: Path, dtype: str) -> float:
    """Seconds of one bare full-weight sync of ``model`` into ``llm`` (see the module's docstring)."""
    import shutil

    from safetensors.torch import save_file

    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # a tied output layer: the engine takes it from the embedding
            continue
        seen.add(tensor.data_ptr())
        state[name] = tensor.detach().to(models.torch_dtype(dtype)).contiguous()
    save_file(state, str(folder / "model.safetensors"))
    llm.collective_rpc("sync_weights", args=(str(folder),))
    llm.reset_prefix_cache()
    return time.perf_counter() - started


def bare_parts(settings: dict[str, Any], workdir: str) -> dict[str, Any]:
    """The median over ``limit_repeats`` runs (after one warm-up run) of the three bare parts and their sum."""
    from cmt.stages.rl import rollout_engine
    from perf import rl

    s = settings["rl"]
    device, group = settings["device"], int(s["group_size"])
    model, tokenizer = models.load(f"{workdir}/model", settings["dtype"], device)
    cfg = rl.compose(settings, workdir, "vllm")
    started = time.perf_counter()
    engine = rollout_engine(cfg, f"{workdir}/model", model, tokenizer)
    engine_start_s = time.perf_counter() - started
    problems = data.synthetic_problems(int(s["prompts_per_step"]), int(settings["seed"]))
    prompts = [data.render(p.question, tokenizer) for p in problems]
    runs = []
    try:
        for repeat in range(int(s["limit_repeats"]) + 1):
            generate_s, completions = vllm_generate(engine.llm, tokenizer, prompts, group, int(s["max_new_tokens"]),
                                                    float(s["temperature"]), int(settings["seed"]) + repeat)
            sequences, prompt_mask, mask = padded(tokenizer, prompts, completions, group, device)
            run = {"generate_s": generate_s,
                   **forward_backward(model, sequences, prompt_mask, mask, float(s["temperature"]),
                                      int(s["micro_batch_size"]), device)}
            sync(device)
            run["sync_s"] = sync_weights(engine.llm, model, Path(workdir) / "vllm-limit-sync", settings["dtype"])
            runs.append(run)
    finally:
        engine.close()
    runs = runs[1:]
    result = {key: median([r[key] for r in runs]) for key in runs[0]}
    result["limit_s"] = median([r["generate_s"] + r["forward_backward_s"] + r["sync_s"] for r in runs])
    result.update({"repeats": len(runs), "engine_start_s": engine_start_s})
    return result
