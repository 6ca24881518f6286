"""The rollouts of one RL step as tensors (:class:`Batch`), and running a model over them micro-batch by
micro-batch, each cut to the columns its rows use."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from cmt.generation import positions
from cmt.rl.masked import completion_mask


class Batch:
    """The rollouts of one RL step as tensors: prompt + completion, and everything the update reads.

    ``input_ids`` is ``[prompt | completion]``: prompts left-padded to ``prompt_width``, completions
    right-padded to the longest rollout. Rollouts come group by group, ``group_size`` per prompt; the distinct
    prompts are kept too (``prompt_ids``), so that a forward pass can run each of them once. Fields added in
    ``fields`` are (B,) or (B, T) over completion tokens.
    """

    def __init__(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, tokens: torch.Tensor,
                 lengths: torch.Tensor, group_size: int):
        self.prompt_ids, self.prompt_mask = prompt_ids, prompt_mask
        self.prompt_width = prompt_ids.shape[1]
        # Each rollout's prompt (a row of prompt_ids); on the host, like the lengths: chunking and cutting
        # read them for every micro-batch.
        self.owner = torch.arange(tokens.shape[0]) // group_size
        self.prompt_lengths = prompt_mask.sum(1).cpu()[self.owner]
        self.lengths = lengths.cpu()
        self.mask = completion_mask(lengths, tokens.shape[1]).float()
        self.input_ids = torch.cat([prompt_ids[self.owner], tokens], dim=1)
        self.attention_mask = torch.cat([prompt_mask[self.owner], self.mask.long()], dim=1)
        self.position_ids = positions(self.attention_mask)
        self.tokens = tokens
        self.fields: dict[str, torch.Tensor] = {}

    def chunks(self, index: Sequence[int] | torch.Tensor, size: int) -> list[torch.Tensor]:
        """``index`` split into chunks of ``size`` rollouts that are cheap to run together (`rows` cuts each).

        Two orders are tried: by prompt + completion length (narrow chunks) and by prompt, then completion
        length (fewer distinct prompts per chunk, each of which runs once); the one whose chunks cost fewer
        tokens (`_tokens`) is kept. With the bundled tiny model's rollouts the second saves 9% of the tokens.
        """
        index = torch.as_tensor(index, dtype=torch.long)
        by_length = index[torch.argsort((self.prompt_lengths + self.lengths)[index], stable=True)]
        by_prompt = index[torch.argsort(self.owner[index] * (int(self.lengths.max()) + 1) + self.lengths[index],
                                        stable=True)]
        orders = [order.split(size) for order in (by_length, by_prompt)]
        return list(min(orders, key=lambda chunks: sum(self._tokens(chunk) for chunk in chunks)))

    def _tokens(self, chunk: torch.Tensor) -> int:
        """Tokens a forward pass over ``chunk`` processes: its distinct prompts once each, cut to the longest
        of them, and each row's completion to the longest one."""
        prompts = len(torch.unique(self.owner[chunk]))
        return prompts * int(self.prompt_lengths[chunk].max()) + len(chunk) * max(int(self.lengths[chunk].max()), 1)

    def rows(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tensors of a subset of rollouts (a micro-batch), cut to the columns its rows use.

        Left padding that every picked prompt has, and completion columns past the longest picked rollout,
        are dropped. They are masked out of attention and loss, so every log-prob, value and loss is the
        same as on the full width; only the forward pass gets cheaper. (B, T) fields are cut to match;
        the completion starts at column ``input_ids.shape[1] - tokens.shape[1]``. ``prompt_ids`` and
        ``prompt_mask`` hold the distinct prompts of the picked rows (cut alike), ``owner`` each row's among them.
        """
        lead = self.prompt_width - int(self.prompt_lengths[index].max())
        width = max(int(self.lengths[index].max()), 1)
        columns = slice(lead, self.prompt_width + width)
        prompts, owner = torch.unique(self.owner[index], return_inverse=True)
        picked = {"input_ids": self.input_ids[index, columns], "attention_mask": self.attention_mask[index, columns],
                  "position_ids": self.position_ids[index, columns], "tokens": self.tokens[index, :width],
                  "mask": self.mask[index, :width], "prompt_ids": self.prompt_ids[prompts, lead:],
                  "prompt_mask": self.prompt_mask[prompts, lead:], "owner": owner.to(self.tokens.device)}
        for name, value in self.fields.items():
            picked[name] = value[index, :width] if value.dim() == 2 else value[index]
        return picked


def completion_slice(values: torch.Tensor, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """Of (B, L) per-position ``values`` over ``rows["input_ids"]``: positions ``P-1 .. P+T-2``, the ones
    that predict the completion's T tokens (and hold their state), P the prompt's width in ``rows``."""
    width = rows["tokens"].shape[1]
    prompt_width = rows["input_ids"].shape[1] - width
    return values[:, prompt_width - 1:prompt_width - 1 + width]


def per_rollout(batch: Batch, chunks: Sequence[torch.Tensor],
                 compute: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> torch.Tensor:
    """(B, T) ``compute(rows)`` over every rollout, one chunk at a time, each in its rollouts' place; zero in
    the columns past a chunk's cut width (past every one of its rollouts' ends)."""
    out = torch.zeros(batch.tokens.shape, dtype=torch.float32, device=batch.tokens.device)
    for index in chunks:
        values = compute(batch.rows(index))
        out[index, :values.shape[1]] = values.float()
    return out
