"""Our sampling loop against transformers' own generate, on the real tiny model."""

import pytest
import torch

from cmt.generation import decode_with_offsets, draw, left_pad, sample, tokens_in_span

PROMPTS = ["Question: Mia has 12 apples. She finds 5 more apples. How many apples does Mia have now?\nAnswer:",
           "Question: Leo has 7 coins.\nAnswer:", "Mia has"]


def test_greedy_matches_transformers_generate_and_logprobs_match_a_forward_pass(tiny):
    model, tokenizer = tiny
    inputs = left_pad(tokenizer, PROMPTS)
    ours = sample(model, **inputs, max_new_tokens=12, eos_ids=[tokenizer.eos_token_id], pad_id=tokenizer.pad_token_id)
    reference = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=tokenizer.eos_token_id)[:, inputs["input_ids"].shape[1]:]
    for row in range(len(PROMPTS)):
        n = int(ours.lengths[row])
        assert ours.tokens[row, :n].tolist() == reference[row, :n].tolist()
    # The recorded log-probs are the model's log-softmax at the chosen tokens (one unpadded row).
    single = left_pad(tokenizer, PROMPTS[:1])
    one = sample(model, **single, max_new_tokens=8, eos_ids=[tokenizer.eos_token_id], pad_id=tokenizer.pad_token_id)
    full = torch.cat([single["input_ids"], one.tokens], dim=1)
    with torch.no_grad():
        logits = model(input_ids=full).logits[0, single["input_ids"].shape[1] - 1:-1]
    expected = torch.log_softmax(logits.float(), -1).gather(1, one.tokens[0][:, None]).squeeze(1)
    torch.testing.assert_close(one.logprobs[0], expected, atol=1e-4, rtol=1e-4)


def test_sampling_is_reproducible_with_a_seeded_generator_and_stops_at_the_limit(tiny):
    model, tokenizer = tiny
    inputs = left_pad(tokenizer, PROMPTS)
    draws = [sample(model, **inputs, max_new_tokens=10, eos_ids=[tokenizer.eos_token_id], pad_id=tokenizer.pad_token_id,
                    temperature=1.0, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(draws[0].tokens, draws[1].tokens)
    assert int(draws[0].lengths.max()) <= 10
    unfinished = ~draws[0].finished
    assert bool((draws[0].lengths[unfinished] == 10).all())


def test_offsets_locate_a_number_exactly(tiny):
    _, tokenizer = tiny
    ids = tokenizer("total = 12 + 15 = 27.", add_special_tokens=False).input_ids
    text, offsets = decode_with_offsets(tokenizer, ids)
    start = text.rindex("27")
    span = tokens_in_span(offsets, start, start + 2)
    assert "".join(text[offsets[i][0]:offsets[i][1]] for i in span).strip() == "27"


def test_several_samples_per_prompt_share_one_prompt_pass_and_give_the_repeated_prompts_rows(tiny):
    model, tokenizer = tiny
    inputs = left_pad(tokenizer, PROMPTS)
    shared = sample(model, **inputs, max_new_tokens=10, eos_ids=[tokenizer.eos_token_id],
                    pad_id=tokenizer.pad_token_id, num_samples=3)
    repeated = sample(model, **{k: v.repeat_interleave(3, dim=0) for k, v in inputs.items()}, max_new_tokens=10,
                      eos_ids=[tokenizer.eos_token_id], pad_id=tokenizer.pad_token_id)
    assert shared.tokens.shape[0] == 3 * len(PROMPTS)
    assert torch.equal(shared.tokens, repeated.tokens)
    assert torch.equal(shared.lengths, repeated.lengths)
    torch.testing.assert_close(shared.logprobs, repeated.logprobs, atol=1e-5, rtol=0)
    # Rows come prompt by prompt: a prompt's greedy rows are identical, and differ from the next prompt's.
    assert torch.equal(shared.tokens[0], shared.tokens[2])
    assert not torch.equal(shared.tokens[0], shared.tokens[3])


def test_drawn_tokens_follow_the_distribution_and_never_an_impossible_one():
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2], [0.0, 0.0, 1.0, 0.0]])
    rows = 20_000
    draws = draw(probs.log().repeat(rows, 1), torch.Generator().manual_seed(0)).view(rows, 2)
    frequencies = torch.bincount(draws[:, 0], minlength=4) / rows
    assert frequencies[1] == 0
    torch.testing.assert_close(frequencies, probs[0], atol=0.015, rtol=0)
    assert (draws[:, 1] == 2).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cpu_generator_draws_the_same_tokens_on_a_gpu():
    """The RL stage keeps a CPU generator (its state is in the checkpoints) and samples on the policy's GPU."""
    logprobs = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    on_cpu = draw(logprobs, torch.Generator().manual_seed(3))
    on_gpu = draw(logprobs.cuda(), torch.Generator().manual_seed(3))
    assert on_gpu.device.type == "cuda" and torch.equal(on_cpu, on_gpu.cpu())
