"""Load a student model and its tokenizer: from the hub, a local folder, a GGUF file or the bundled tiny model.

``conf/model/*.yaml`` describe where a model comes from (``source``: a hub id, ``bundled:NAME`` for a
model shipped in ``cmt/assets``, or ``package:PACKAGE/FILE`` for a file inside an installed Python package;
``path``: a local folder or ``.gguf`` file that overrides the source; GGUF files are converted once into a
cached folder, `cmt.gguf`) and how to wrap it (dtype, LoRA through PEFT). Fine-tuned checkpoints are plain
``save_pretrained`` folders, so every later stage loads them with the same function. Weights are written as
safetensors and read back as safetensors (transformers and PEFT prefer them, and load a legacy ``.bin`` only
with ``torch.load(weights_only=True)``), so loading a model never unpickles arbitrary objects.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from cmt import gguf
from cmt.atomic import scratch_folder
from cmt.errors import ModelNotFoundError

BUNDLED_PREFIX = "bundled:"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# The attention kernels transformers can load a model with (``model.attn_implementation``); null leaves its
# default (sdpa). The flash_attention ones need their package and a GPU.
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


def bundled_path(name: str) -> Path:
    """The folder of a model shipped inside the package (``cmt/assets/<name>``)."""
    return Path(str(resources.files("cmt") / "assets" / name))


def locate_source(model_cfg: DictConfig | dict[str, Any]) -> str:
    """Where the model's files are, without converting anything: a folder, a GGUF file or a hub id.

    ``path`` when set (a folder, or a ``.gguf`` file), else ``source``: ``bundled:NAME`` (a model inside
    ``cmt/assets``), ``package:PACKAGE/PATH`` (a folder or ``.gguf`` file inside an installed Python package,
    `cmt.gguf`), or a hub id. Cheap (no model is read), so config validation calls it.

    Raises:
        ModelNotFoundError: ``path``, the bundled model or the package's file does not exist, the package is not
            installed (the message quotes ``model.install``), or a GGUF file needs the missing ``gguf`` package.
    """
    path = model_cfg.get("path")
    if path:
        if gguf.is_gguf(path) and Path(path).is_file():
            gguf.require_gguf("model.path", str(path))
            return str(path)
        if not Path(path).is_dir():
            raise ModelNotFoundError(f"model.path={path} is not a folder (nor a .gguf file); point it at a "
                                     "save_pretrained folder or a GGUF file")
        return str(path)
    source = str(model_cfg["source"])
    if source.startswith(BUNDLED_PREFIX):
        folder = bundled_path(source.removeprefix(BUNDLED_PREFIX))
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"bundled model {source!r} is missing from {folder}; rebuild it with "
                f"`python run.py stage=pretrain stage.output_dir={folder}`")
        return str(folder)
    if source.startswith(gguf.PACKAGE_PREFIX):
        found = gguf.package_file(source, model_cfg.get("install"))
        if gguf.is_gguf(found):
            gguf.require_gguf("model.source", source)
        return str(found)
    return source


def resolve_source(model_cfg: DictConfig | dict[str, Any]) -> str:
    """The folder (or hub id) to load the model from: `locate_source`, with a GGUF file replaced by its
    converted folder under ``model.cache_dir`` (converted on the first call for that file, `cmt.gguf`).

    This is what every loader of the student reads, transformers and vLLM alike: for ``model=smollm2`` it is
    the cached safetensors folder with the tokenizer and chat template.

    Raises:
        ModelNotFoundError: As `locate_source`.
    """
    located = locate_source(model_cfg)
    if gguf.is_gguf(located):
        return str(gguf.converted_folder(located, model_cfg.get("cache_dir")))
    return located


def _load_error(source: str, error: Exception) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"could not load model {source!r} ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
        "without hub access, download it elsewhere and pass the folder as model.path=/path/to/model")


def load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    """The tokenizer at ``source``, with a pad token (the EOS token when the model has none)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise _load_error(source, error) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_cfg: DictConfig | dict[str, Any], checkpoint: str | os.PathLike | None = None,
               ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the student described by ``model_cfg``, optionally from a fine-tuned ``checkpoint`` folder.

    Args:
        model_cfg: A ``conf/model`` node (``source``, ``path``, ``dtype``, ``attn_implementation``, ``lora``,
            ``activation_checkpointing``).
        checkpoint: A folder written by a training stage; it holds full weights, or a LoRA adapter over the
            base model of ``model_cfg``.

    Returns:
        The model (in train mode off, on CPU) and its tokenizer.

    Raises:
        ModelNotFoundError: Nothing loadable where the config points, with the override that fixes it.
    """
    base = resolve_source(model_cfg)
    dtype = DTYPES[str(model_cfg.get("dtype", "float32"))]
    adapter = checkpoint is not None and (Path(checkpoint) / "adapter_config.json").is_file()
    weights = base if checkpoint is None or adapter else str(checkpoint)
    attention = model_cfg.get("attn_implementation")
    options = {"attn_implementation": str(attention)} if attention else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(weights, dtype=dtype, **options)
    except (OSError, ValueError) as error:
        raise _load_error(weights, error) from error
    tokenizer = load_tokenizer(str(checkpoint) if checkpoint is not None and not adapter else base)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
    elif model_cfg.get("lora", {}).get("enabled", False):
        model = wrap_lora(model, model_cfg["lora"])
    if model_cfg.get("activation_checkpointing", False):
        enable_activation_checkpointing(model)
    model.eval()
    return model, tokenizer


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Training forwards keep only each layer's input and recompute the rest in the backward pass: about a
    third more compute for a fraction of the activation memory. Non-reentrant, so frozen inputs (LoRA) need
    no requires_grad workaround. Inference (eval mode) is unaffected."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def wrap_lora(model: PreTrainedModel, lora_cfg: DictConfig | dict[str, Any]) -> PreTrainedModel:
    """Wrap ``model`` with fresh LoRA adapters as described by ``model.lora``."""
    from peft import LoraConfig, get_peft_model

    target = lora_cfg.get("target_modules", "all-linear")
    config = LoraConfig(
        r=int(lora_cfg["r"]), lora_alpha=int(lora_cfg["alpha"]), lora_dropout=float(lora_cfg["dropout"]),
        target_modules=target if isinstance(target, str) else list(target), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | os.PathLike) -> None:
    """Write weights (safetensors, or only the adapter for LoRA) and tokenizer to ``folder``.

    The files are written into a temporary folder beside it and then moved in, each replacing its namesake:
    a file never changes in place, so a crash mid-save leaves the earlier file whole, and a file that is a
    hard link of another folder's (`cmt.stages.reuse`) is unlinked from this folder, not overwritten there.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with scratch_folder(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for path in sorted(tmp.iterdir()):
            os.replace(path, folder / path.name)
