"""The chunked LM head: the log-probs, entropies and gradients of full logits, without holding them."""

import pytest
import torch

from cmt.lm_head import (
    UnsupportedHeadError,
    chosen_logprobs,
    entropy_from_logits,
    split_head,
    token_logprobs,
)

VOCAB, HIDDEN, N = 50, 8, 23


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(HIDDEN, VOCAB, bias=False)
    torch.nn.init.normal_(head.weight, generator=generator)
    hidden = torch.randn(N, HIDDEN, generator=generator, requires_grad=True)
    tokens = torch.randint(0, VOCAB, (N,), generator=generator)
    return head, hidden, tokens


@pytest.mark.parametrize("chunk_tokens", [None, 1, 5, N, 100])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunks_give_the_log_probs_entropies_and_gradients_of_the_full_logits(chunk_tokens, temperature):
    head, hidden, tokens = _inputs()
    weights = torch.linspace(-1, 1, N)
    logits = head(hidden)
    expected = token_logprobs(logits, tokens, temperature)
    (expected * weights).sum().backward()
    expected_grads = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None

    logprobs, entropies = chosen_logprobs(head, hidden, tokens, temperature, chunk_tokens, entropy=True)
    (logprobs * weights).sum().backward()
    torch.testing.assert_close(logprobs, expected)
    torch.testing.assert_close(entropies, entropy_from_logits(logits.detach()))
    assert not entropies.requires_grad
    torch.testing.assert_close((hidden.grad, head.weight.grad), expected_grads)


def test_chunked_backward_keeps_no_logits():
    """What autograd keeps for the backward pass: the logits (and more) without chunks; with chunks, only
    the hidden states they start from and their tokens (each chunk's logits are projected again)."""
    def saved_elements(chunk_tokens):
        head, hidden, tokens = _inputs()
        sizes = []

        def pack(tensor):
            sizes.append(tensor.numel())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            logprobs, _ = chosen_logprobs(head, hidden, tokens, chunk_tokens=chunk_tokens)
        logprobs.sum().backward()
        return sum(sizes)

    assert saved_elements(None) >= N * VOCAB
    assert saved_elements(4) <= N * (HIDDEN + 1)


def test_no_gradient_means_one_projection_per_chunk():
    head, hidden, tokens = _inputs()
    shapes = []
    head.register_forward_hook(lambda module, args, output: shapes.append(tuple(output.shape)))
    with torch.no_grad():
        chosen_logprobs(head, hidden, tokens, chunk_tokens=10)
    assert shapes == [(10, VOCAB), (10, VOCAB), (3, VOCAB)]


def test_no_positions_give_empty_results():
    head, hidden, tokens = _inputs()
    logprobs, entropies = chosen_logprobs(head, hidden[:0], tokens[:0], chunk_tokens=4, entropy=True)
    assert logprobs.shape == entropies.shape == (0,)


def test_split_head_refuses_an_architecture_whose_logits_are_not_a_plain_projection():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=VOCAB, n_positions=16))
    with pytest.raises(UnsupportedHeadError, match="a gpt2 model is not one: set model.logits_chunk_tokens=null"):
        split_head(model)


def test_split_head_reaches_through_lora(tiny):
    from cmt.models import wrap_lora

    model, _ = tiny
    policy = wrap_lora(model, {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"})
    decoder, head = split_head(policy)
    assert decoder is model.model and head is model.lm_head
