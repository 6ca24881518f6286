"""Generation with vLLM for ``eval.backend=vllm``: much faster batched decoding of large models on a GPU.

It returns the same :class:`cmt.eval.evaluate.Completion` records as the default Hugging Face loop
(:func:`cmt.eval.evaluate.generate_completions`), so scoring, metrics and predictions files are identical.
vLLM is an optional extra (``pip install -e ".[vllm]"``); :func:`require_vllm` is called before any model
loads so that a missing install fails in one line, not after minutes of loading.

Differences from the default backend: sampled runs draw from vLLM's own seeded sampler (different samples
from the same seed), and vLLM reports by default log-probabilities of the model's raw distribution, not
the temperature-scaled one (equal under greedy decoding, which is where answer confidence is compared).
A LoRA checkpoint is served as an adapter over the base model (``enable_lora``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmt.errors import ConfigError
from cmt.eval.evaluate import Completion

INSTALL_HINT = 'eval.backend=vllm needs vLLM: pip install -e ".[vllm]"'


def require_vllm() -> None:
    """Raise :class:`ConfigError` with the install command when vLLM cannot be imported."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


@dataclass
class Engine:
    """A loaded vLLM model and, for a LoRA checkpoint, the adapter every request uses."""

    llm: Any
    lora: Any = None


def load(base: str, checkpoint: str | Path | None, dtype: str = "auto", seed: int = 0) -> Engine:
    """Load a model into vLLM, once per evaluated method.

    Args:
        base: The base model (a hub id or folder, :func:`cmt.models.resolve_source`).
        checkpoint: A fine-tuned folder: full weights, or a LoRA adapter over ``base``; None for ``base``.
        dtype: The weights' dtype (``model.dtype``).
        seed: vLLM's seed.
    """
    require_vllm()
    from vllm import LLM
    from vllm.lora.request import LoRARequest

    adapter = checkpoint is not None and (Path(checkpoint) / "adapter_config.json").is_file()
    if not adapter:
        return Engine(LLM(model=str(checkpoint or base), dtype=dtype, seed=int(seed)))
    # vLLM reserves LoRA memory for ranks up to max_lora_rank (default 16): make it the adapter's rank.
    rank = json.loads((Path(checkpoint) / "adapter_config.json").read_text())["r"]
    return Engine(LLM(model=base, dtype=dtype, seed=int(seed), enable_lora=True, max_lora_rank=rank),
                  LoRARequest("checkpoint", 1, str(checkpoint)))


def generate(engine: Engine, prompts: Sequence[str], max_new_tokens: int, samples: int = 1,
             temperature: float = 0.0, seed: int = 0) -> list[Completion]:
    """``samples`` completions per prompt, one prompt's after another, as
    :func:`cmt.eval.evaluate.generate_completions` returns them (greedy when ``samples`` is 1)."""
    from vllm import SamplingParams

    params = SamplingParams(n=samples, temperature=temperature if samples > 1 else 0.0, max_tokens=max_new_tokens,
                            logprobs=1, seed=int(seed))
    completions = []
    for request in engine.llm.generate(list(prompts), params, lora_request=engine.lora):
        for out in request.outputs:
            ids = list(out.token_ids)
            completions.append(Completion(
                text=out.text, token_ids=ids, logprobs=[step[t].logprob for step, t in zip(out.logprobs, ids)],
                finished=out.finish_reason == "stop"))
    return completions
