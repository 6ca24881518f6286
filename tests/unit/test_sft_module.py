"""The SFT module trains: parameters move, the loss falls, and only target tokens carry loss."""

import pytest
import torch

from cmt.data.sft import IGNORE_INDEX, collate, tokenize_pairs
from cmt.modules.sft import SFTModule


def test_loss_mask_covers_exactly_the_target_and_eos(tiny):
    _, tokenizer = tiny
    [example] = tokenize_pairs(tokenizer, ["Question: Q?\nAnswer:"], ["The answer is 7."], max_length=64)
    prompt_len = len(tokenizer("Question: Q?\nAnswer:").input_ids)
    assert example.labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert example.labels[prompt_len:] == example.input_ids[prompt_len:]
    assert example.input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(example.input_ids[prompt_len:-1]) == " The answer is 7."


def test_a_few_steps_change_parameters_and_lower_the_loss(tiny):
    model, tokenizer = tiny
    examples = tokenize_pairs(tokenizer, [f"Question: Mia has {n} apples.\nAnswer:" for n in range(8)],
                              [f"The answer is {n}." for n in range(8)], max_length=64)
    batch = collate(examples, tokenizer.pad_token_id)
    module = SFTModule(model, lambda params: torch.optim.AdamW(params, lr=1e-3))
    optimizer = module.optimizer_factory(params=list(model.parameters()))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    losses = []
    for _ in range(5):
        loss = module(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    changed = [name for name, p in model.named_parameters() if not torch.equal(before[name], p)]
    assert len(changed) == len(before)
    assert losses[-1] < losses[0]


def test_activation_checkpointing_recomputes_in_the_backward_and_gives_the_same_gradients(tiny):
    """``model.activation_checkpointing: true`` trades compute for memory and changes no gradient."""
    from cmt.models import load_model

    _, tokenizer = tiny
    examples = tokenize_pairs(tokenizer, [f"Question: Mia has {n} apples.\nAnswer:" for n in range(4)],
                              [f"The answer is {n}." for n in range(4)], max_length=64)
    batch = collate(examples, tokenizer.pad_token_id)
    gradients = {}
    for checkpointing in (False, True):
        model, _ = load_model({"source": "bundled:tiny", "path": None, "dtype": "float32",
                               "lora": {"enabled": False}, "activation_checkpointing": checkpointing})
        assert model.is_gradient_checkpointing is checkpointing
        model.train()
        SFTModule(model, lambda params: torch.optim.AdamW(params, lr=1e-3))(batch).backward()
        gradients[checkpointing] = {name: p.grad for name, p in model.named_parameters()}
    for name, gradient in gradients[False].items():
        torch.testing.assert_close(gradients[True][name], gradient, rtol=1e-5, atol=1e-7, msg=name)


def test_attention_implementations_agree_and_the_config_chooses_one(tiny):
    """``model.attn_implementation`` reaches transformers, and eager and sdpa attention give the same loss and
    gradients on a right-padded batch (the tiny model trains with eager: faster on a CPU under bf16)."""
    from cmt.models import load_model

    _, tokenizer = tiny
    prompts = [f"Question: Mia has {n} apples and {n + 3} pears.\nAnswer:" for n in range(4)]
    examples = tokenize_pairs(tokenizer, prompts, [f"The answer is {n}." * (n + 1) for n in range(4)], max_length=96)
    batch = collate(examples, tokenizer.pad_token_id)
    assert not bool(batch["attention_mask"].all()), "the batch must hold padding"
    losses, gradients = {}, {}
    for attention in ("eager", "sdpa"):
        model, _ = load_model({"source": "bundled:tiny", "path": None, "dtype": "float32",
                               "attn_implementation": attention, "lora": {"enabled": False}})
        assert model.config._attn_implementation == attention
        model.train()
        loss = SFTModule(model, lambda params: torch.optim.AdamW(params, lr=1e-3))(batch)
        loss.backward()
        losses[attention] = loss.item()
        gradients[attention] = {name: p.grad for name, p in model.named_parameters()}
    assert abs(losses["eager"] - losses["sdpa"]) < 1e-5
    for name, gradient in gradients["sdpa"].items():
        torch.testing.assert_close(gradients["eager"][name], gradient, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_chunked_lm_head_gives_the_models_own_loss_and_gradients(checkpointing):
    """``model.logits_chunk_tokens``: target tokens scored through the LM head 5 at a time (`cmt.lm_head`)
    give transformers' cross-entropy over the full logits, and its gradients, with activation checkpointing too."""
    from cmt.models import load_model

    results = {}
    for chunk in (None, 5):
        model, tokenizer = load_model({"source": "bundled:tiny", "path": None, "dtype": "float32",
                                       "lora": {"enabled": False}, "activation_checkpointing": checkpointing})
        examples = tokenize_pairs(tokenizer, [f"Question: Leo has {n} coins and finds {2 * n}.\nAnswer:"
                                              for n in range(3)],
                                  [f"He has {n} + {2 * n} = {3 * n} coins. The answer is {3 * n}." for n in range(3)],
                                  max_length=96)
        batch = collate(examples, tokenizer.pad_token_id)
        assert int((batch["labels"] != IGNORE_INDEX).sum()) > 10
        model.train()
        loss = SFTModule(model, lambda params: torch.optim.AdamW(params, lr=1e-3), logits_chunk_tokens=chunk)(batch)
        loss.backward()
        results[chunk] = loss.item(), {name: p.grad for name, p in model.named_parameters()}
    assert abs(results[5][0] - results[None][0]) < 1e-5
    # The same sums in another order: float32 rounding only.
    for name, gradient in results[None][1].items():
        assert float((results[5][1][name] - gradient).norm() / gradient.norm()) < 1e-4, name
