"""Completion logits with each prompt run once per group: the same values and gradients as whole rows."""

import pytest
import torch

from cmt.generation import left_pad, sample
from cmt.lm_head import token_logprobs
from cmt.modules.rl import Batch
from cmt.rl.forward import completion_logits, completion_logprobs

PROMPTS = ["Question: Mia has 12 apples. She finds 5 more apples. How many apples does Mia have now?\nAnswer:",
           "Question: Leo has 7 coins.\nAnswer:",
           "Question: A box holds 3 pens. How many pens are in 4 boxes?\nAnswer:"]
GROUP = 4


@pytest.fixture
def batch(tiny) -> Batch:
    """Sampled rollouts of three prompts, four each, of varied lengths."""
    model, tokenizer = tiny
    inputs = left_pad(tokenizer, PROMPTS)
    sampled = sample(model, **inputs, max_new_tokens=12, eos_ids=[tokenizer.eos_token_id],
                     pad_id=tokenizer.pad_token_id, temperature=1.0, generator=torch.Generator().manual_seed(0),
                     num_samples=GROUP)
    batch = Batch(inputs["input_ids"], inputs["attention_mask"], sampled.tokens, sampled.lengths, GROUP)
    assert len(set(batch.lengths.tolist())) > 1 and len(set(batch.prompt_lengths.tolist())) > 1
    return batch


def whole_rows(model, rows):
    """The reference: logits from one plain pass over every row's ``[prompt | completion]`` (the positions that
    predict the completion tokens: the last ``T + 1`` but one)."""
    width = rows["tokens"].shape[1]
    logits = model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"],
                   position_ids=rows["position_ids"]).logits
    return logits[:, -width - 1:-1]


def _logprobs_and_gradient(model, rows, forward):
    model.zero_grad(set_to_none=True)
    logprobs = token_logprobs(forward(model, rows), rows["tokens"])
    (logprobs * rows["mask"]).sum().backward()
    return logprobs.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


def test_prompts_once_give_the_whole_rows_log_probs_and_gradients(tiny, batch):
    model, _ = tiny
    model.train()
    # A micro-batch of rows from two of the three prompts, in mixed order.
    index = torch.tensor([5, 0, 6, 3, 1, 4])
    rows = batch.rows(index)
    assert rows["prompt_ids"].shape[0] == 2 and rows["owner"].tolist() == [1, 0, 1, 0, 0, 1]
    whole, whole_grad = _logprobs_and_gradient(model, rows, whole_rows)
    shared, shared_grad = _logprobs_and_gradient(model, rows, completion_logits)
    mask = rows["mask"].bool()
    torch.testing.assert_close(shared[mask], whole[mask], atol=1e-4, rtol=0)
    assert float((shared_grad - whole_grad).norm() / whole_grad.norm()) < 1e-4


def test_one_token_completions_need_only_the_prompt_pass(tiny, batch):
    model, _ = tiny
    rows = batch.rows(torch.arange(batch.tokens.shape[0]))
    # Every rollout cut to its first token: [prompt | token].
    columns = rows["prompt_ids"].shape[1] + 1
    rows.update({name: rows[name][:, :columns] for name in ("input_ids", "attention_mask", "position_ids")})
    rows.update(tokens=rows["tokens"][:, :1], mask=torch.ones_like(rows["mask"][:, :1]))
    with torch.no_grad():
        shared = completion_logits(model.eval(), rows)
        whole = whole_rows(model, rows)
    assert shared.shape[1] == 1
    torch.testing.assert_close(shared, whole, atol=1e-4, rtol=0)


def test_a_checkpointed_model_in_training_gets_whole_rows(tiny, batch):
    """transformers drops the KV cache of a checkpointed layer in training mode: the prompts-once pass would
    see completions without their prompt. The checkpointed model must give the uncheckpointed values."""
    from cmt.models import enable_activation_checkpointing

    model, _ = tiny
    rows = batch.rows(torch.arange(batch.tokens.shape[0]))
    model.train()
    expected, _ = _logprobs_and_gradient(model, rows, completion_logits)
    enable_activation_checkpointing(model)
    model.train()
    checkpointed, _ = _logprobs_and_gradient(model, rows, completion_logits)
    mask = rows["mask"].bool()
    torch.testing.assert_close(checkpointed[mask], expected[mask], atol=1e-4, rtol=0)


def test_copying_prompt_rows_adds_their_gradients_in_a_fixed_order():
    """A seeded run must repeat itself: the copy's backward may not add gradients in a thread-dependent
    order. (Advanced indexing, ``keys[owner]``, fails this at these sizes on two threads: its backward adds
    with atomics.)"""
    from transformers import DynamicCache

    from cmt.rl.forward import _copy_rows

    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(4, 2, 300, 64, generator=generator, requires_grad=True)
    owner = torch.arange(32) % 4
    weight = torch.randn(32, 2, 300, 64, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))
    try:
        gradients = []
        for _ in range(20):
            cache = DynamicCache()
            cache.update(keys, keys, 0)
            _copy_rows(cache, owner)
            (cache.layers[0].keys * weight).sum().backward()
            gradients.append(keys.grad.clone())
            keys.grad = None
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(gradients[0], g) for g in gradients[1:])


@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_chunked_lm_head_gives_the_full_logits_log_probs_entropies_and_gradients(tiny, batch, checkpointing):
    """Completion log-probs from the last hidden states through the LM head 4 tokens at a time, on the
    prompts-once pass (and the whole rows a checkpointed model gets): the values of the full logits."""
    from cmt.models import enable_activation_checkpointing

    model, _ = tiny
    if checkpointing:
        enable_activation_checkpointing(model)
    model.train()
    rows = batch.rows(torch.tensor([5, 0, 6, 3, 1, 4, 9]))
    mask = rows["mask"].bool()
    results = {}
    for chunk in (None, 4):
        model.zero_grad(set_to_none=True)
        logprobs, entropies = completion_logprobs(model, rows, temperature=0.8, chunk_tokens=chunk, entropy=True)
        (logprobs * rows["mask"]).sum().backward()
        results[chunk] = logprobs.detach()[mask], entropies, torch.cat([p.grad.flatten() for p in model.parameters()])
    (full, full_entropy, full_grad), (chunked, chunked_entropy, chunked_grad) = results[None], results[4]
    assert int(mask.sum()) > 4 * 3
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked_entropy, full_entropy, atol=1e-5, rtol=0)
    assert float((chunked_grad - full_grad).norm() / full_grad.norm()) < 1e-4
