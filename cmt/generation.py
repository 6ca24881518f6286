"""Batched autoregressive sampling with the KV cache, keeping the log-probability of every chosen token.

Eval (greedy) and RL rollouts (sampled) both need, per generated token, the log-probability the model gave
it: eval turns it into answer confidence, RL into the old-policy log-probs of PPO and into step confidence.
``transformers``' ``generate`` can return them only by storing the full logits of every step, so this small
loop records the chosen token's log-probability as it goes and stops as soon as every sequence has ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass
class Sampled:
    """A batch of completions.

    Attributes:
        tokens: (B, T) generated token ids, ``pad_id`` after each sequence's end.
        logprobs: (B, T) log-probability of each generated token under the sampling distribution
            (temperature-scaled; plain softmax for greedy), 0 after the end.
        lengths: (B,) number of generated tokens per row, the EOS token included.
        finished: (B,) whether the row ended with EOS (False: cut at ``max_new_tokens``).
    """

    tokens: torch.Tensor
    logprobs: torch.Tensor
    lengths: torch.Tensor
    finished: torch.Tensor


@torch.no_grad()
def sample(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
           eos_ids: Sequence[int], pad_id: int, temperature: float = 0.0,
           generator: torch.Generator | None = None, compact_fraction: float = 0.25,
           num_samples: int = 1) -> Sampled:
    """Sample up to ``max_new_tokens`` tokens after left-padded prompts, ``num_samples`` times each.

    With ``num_samples`` > 1 (an RL group, pass@k samples) each prompt is run through the model once and its
    KV cache is copied to its ``num_samples`` rows, laid out prompt by prompt (rows ``i * num_samples`` to
    ``(i + 1) * num_samples - 1`` continue prompt ``i``): the same rows as repeating every prompt, without
    paying for the prompt ``num_samples`` times.

    Rows that have ended leave the batch: once at least ``compact_fraction`` of the rows still being
    decoded have emitted EOS, they are dropped from the KV cache and the batch (``Cache.batch_select_indices``),
    so a batch whose lengths vary no longer pays for its longest row on every row. Each row's tokens and
    log-probs are unchanged by this (greedy decoding gives the same tokens; sampling draws from the same
    distributions, though from a different stream of the generator once the batch shrinks).

    Args:
        model: A causal LM that accepts ``past_key_values``, ``position_ids`` and ``logits_to_keep``.
        input_ids, attention_mask: (B, P) left-padded prompts.
        eos_ids: Token ids that end a sequence.
        temperature: 0 for greedy decoding, else softmax sampling at this temperature.
        generator: Random generator for sampling (reproducible rollouts).
        compact_fraction: Drop ended rows when they are at least this fraction of the live batch
            (1.0: only when all have ended, i.e. never compact).
        num_samples: Completions per prompt.

    Returns:
        ``B * num_samples`` rows, prompt by prompt.
    """
    device = input_ids.device
    eos = torch.tensor(list(eos_ids), device=device)
    position_ids = positions(attention_mask)
    cache = DynamicCache()
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    last_logits = out.logits[:, -1]
    if num_samples > 1:
        cache.batch_repeat_interleave(num_samples)
        last_logits = last_logits.repeat_interleave(num_samples, dim=0)
        attention_mask = attention_mask.repeat_interleave(num_samples, dim=0)
        position_ids = position_ids.repeat_interleave(num_samples, dim=0)
    batch = attention_mask.shape[0]
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((batch, max_new_tokens), dtype=torch.float32, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    # The rows still in the batch (indices into the full batch), and which of them have ended.
    live = torch.arange(batch, device=device)
    ended = torch.zeros(batch, dtype=torch.bool, device=device)
    next_position = position_ids[:, -1:] + 1
    steps = 0
    for step in range(max_new_tokens):
        steps = step + 1
        logits = last_logits.float()
        if temperature > 0:
            logits = logits / temperature
        step_logprobs = torch.log_softmax(logits, dim=-1)
        if temperature > 0:
            choice = draw(step_logprobs, generator)
        else:
            choice = step_logprobs.argmax(-1)
        chosen_logprob = step_logprobs.gather(1, choice[:, None]).squeeze(1)
        choice = torch.where(ended, torch.full_like(choice, pad_id), choice)
        tokens[live, step] = choice
        logprobs[live, step] = torch.where(ended, torch.zeros_like(chosen_logprob), chosen_logprob)
        lengths[live] += (~ended).long()
        ended = ended | torch.isin(choice, eos)
        n_ended = int(ended.sum())
        if n_ended == live.shape[0]:
            break
        if n_ended and n_ended >= compact_fraction * live.shape[0]:
            keep = torch.nonzero(~ended).squeeze(1)
            finished[live[ended]] = True
            cache.batch_select_indices(keep)
            live, choice, attention_mask = live[keep], choice[keep], attention_mask[keep]
            next_position, ended = next_position[keep], ended[keep]
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        out = model(input_ids=choice[:, None], attention_mask=attention_mask, position_ids=next_position,
                    past_key_values=cache, use_cache=True)
        last_logits = out.logits[:, -1]
        next_position = next_position + 1
    finished[live[ended]] = True
    return Sampled(tokens[:, :steps], logprobs[:, :steps], lengths, finished)


def draw(logprobs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of (B, V) ``logprobs``, drawn from their distribution: (B,) token ids.

    The CDF is inverted at one uniform number per row, where ``torch.multinomial`` draws an exponential
    number for every vocabulary entry: much faster on a CPU (measured: perf/README.md, "What changed"). The CDF
    is summed in float64 (float32 on Apple's MPS, which has no float64), so a token whose probability is far
    below float32's resolution near 1 keeps its share. Zero-probability tokens are never drawn
    (``right=True`` skips the flat steps of the CDF). The uniform numbers come from ``generator``'s own device
    (torch refuses a generator of another device), so the RL stage's CPU generator, whose state its
    checkpoints keep, drives sampling on a GPU too, with the same numbers for the same seed.
    """
    cdf = logprobs.to(torch.float32 if logprobs.device.type == "mps" else torch.float64).exp().cumsum(-1)
    source = generator.device if generator is not None else cdf.device
    uniform = torch.rand((cdf.shape[0], 1), generator=generator, device=source, dtype=cdf.dtype).to(cdf.device)
    point = uniform * cdf[:, -1:]
    return torch.searchsorted(cdf, point, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows: 0 at each row's first real token (padding gets 0 too; it is masked)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def left_pad(tokenizer, texts: Sequence[str], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Tokenize ``texts`` with left padding (what batched generation needs)."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        encoded = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return {"input_ids": encoded.input_ids.to(device), "attention_mask": encoded.attention_mask.to(device)}


def decode_with_offsets(tokenizer, token_ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Decode token by token: the joined text and each token's (start, end) character span in it.

    Joining per-token pieces keeps offsets exact (a full ``decode`` may merge or clean up spaces); a
    character split across byte-level tokens shows as U+FFFD here, which never affects a number.
    """
    pieces = tokenizer.batch_decode([[t] for t in token_ids], skip_special_tokens=False,
                                    clean_up_tokenization_spaces=False)
    offsets, position = [], 0
    for piece in pieces:
        offsets.append((position, position + len(piece)))
        position += len(piece)
    return "".join(pieces), offsets


def tokens_in_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the tokens that overlap the character span [start, end)."""
    return [i for i, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
