"""A LoRA student's merged weights (cmt.lora_merge) are the PEFT model's function, and the model is untouched."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from cmt.errors import ConfigError
from cmt.lora_merge import lora_mode, merged_state_dict, save_merged
from cmt.models import bundled_path, load_tokenizer
from cmt.vllm_engine import validate_vllm_config


@pytest.fixture
def lora_model():
    """The bundled tiny model with a rank-4 adapter on every linear layer, its B matrices random (a fresh
    adapter's are zero, which would hide a merge that drops them), and a second, frozen adapter as RL's
    reference has."""
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(bundled_path("tiny")), torch_dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    model.add_adapter("sft_reference", LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)
    model.set_adapter("default")
    return model.eval()


def test_merged_weights_compute_what_the_lora_model_computes(lora_model, tmp_path):
    tokenizer = load_tokenizer(str(bundled_path("tiny")))
    ids = tokenizer(["Question: 12 + 3?\nAnswer:", "Tom has 5 bags"], return_tensors="pt", padding=True)
    before = {k: v.clone() for k, v in lora_model.state_dict().items()}
    with torch.no_grad():
        expected = lora_model(**ids).logits
        plain_base = lora_model.get_base_model()
        with lora_model.disable_adapter():
            unadapted = plain_base(**ids).logits
    folder = save_merged(lora_model, tmp_path / "merged", tokenizer)
    merged = AutoModelForCausalLM.from_pretrained(str(folder), torch_dtype=torch.float32).eval()
    with torch.no_grad():
        got = merged(**ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, unadapted, atol=1e-2)  # the adapter changes the function
    # No LoRA tensors, and no name of PEFT's wrapping, in the merged weights.
    assert not any("lora_" in k or "base_layer" in k for k in merged_state_dict(lora_model))
    # The LoRA model itself is unchanged (no merge/unmerge drift).
    assert all(torch.equal(before[k], v) for k, v in lora_model.state_dict().items())


def test_vllm_lora_mode_is_checked_and_auto_is_merged_on_a_cpu():
    assert lora_mode({"lora": "adapter"}) == "adapter"
    assert lora_mode({"lora": "auto"}) == ("adapter" if torch.cuda.is_available() else "merged")
    with pytest.raises(ConfigError, match=r"vllm.lora"):
        validate_vllm_config({"tensor_parallel_size": 1, "gpu_memory_utilization": 0.9, "enforce_eager": False,
                              "lora": "fused"})
