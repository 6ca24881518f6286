"""A teacher that runs a local transformers model: batched generation with the KV cache, no server.

Prompts are sorted by length and generated ``batch_size`` rows at a time (a request's ``n`` samples are
rows of the same batch), with `cmt.generation.sample`: greedy at ``temperature=0``, else seeded sampling.
Each request is reported as soon as its batch is done. The same class backs the model mode of the test
server (`tools/openai_server.py`), so the bundled tiny model can play an OpenAI-compatible teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cmt.generation import left_pad, sample
from cmt.models import load_model
from cmt.teachers.chat import ChatRequest, ChatResult, Messages, OnResult


def render_chat(tokenizer, messages: Messages, use_chat_template: bool = True) -> str:
    """The prompt text of a chat: the tokenizer's chat template when it has one, else the turns' contents
    separated by blank lines (the tiny model has no chat template)."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n"


class HFTeacher:
    """A chat teacher backed by a local causal LM.

    Args:
        name: Names the training-set folder and result rows.
        source: A hub id or ``bundled:NAME`` (as in ``conf/model``).
        path: A local ``save_pretrained`` folder; overrides ``source``.
        dtype: ``float32``, ``bfloat16`` or ``float16``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        batch_size: Rows (prompt x sample) generated together.
        max_tokens: Tokens generated at most per sample.
        temperature: 0 for greedy decoding, else sampling at this temperature.
        use_chat_template: Render chats with the tokenizer's chat template when it has one.
        seed: Seeds sampling (the answers then depend on the batch layout too).
    """

    def __init__(self, name: str = "hf", source: str = "bundled:tiny", path: str | None = None,
                 dtype: str = "float32", device: str = "auto", batch_size: int = 16, max_tokens: int = 256,
                 temperature: float = 0.0, use_chat_template: bool = True, seed: int = 0):
        self.name = name
        self.model_cfg = {"source": source, "path": path, "dtype": dtype, "lora": {"enabled": False}}
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.batch_size = int(batch_size)
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.use_chat_template = bool(use_chat_template)
        self.seed = int(seed)
        self._model = self._tokenizer = None

    def fingerprint(self) -> dict[str, Any]:
        """The model and the decoding settings (the seed only matters when sampling)."""
        return {"model": self.model_cfg["path"] or self.model_cfg["source"], "dtype": self.model_cfg["dtype"],
                "max_tokens": self.max_tokens, "temperature": self.temperature,
                "use_chat_template": self.use_chat_template, **({"seed": self.seed} if self.temperature else {})}

    def check(self) -> None:
        """Load the model (raises `cmt.models.ModelNotFoundError` with the fix when it cannot)."""
        if self._model is None:
            model, self._tokenizer = load_model(self.model_cfg)
            self._model = model.to(self.device)

    def prompt(self, messages: Messages) -> str:
        """The prompt text of a chat for this model (loads the model on first use)."""
        self.check()
        return render_chat(self._tokenizer, messages, self.use_chat_template)

    def generate(self, prompts: Sequence[str], max_tokens: int, temperature: float,
                 generator: torch.Generator | None = None) -> list[tuple[str, str, int]]:
        """One completion per prompt, generated as one batch.

        Returns:
            Per prompt: ``(text, finish_reason, tokens generated)``, ``finish_reason`` being ``stop`` or
            ``length``.
        """
        self.check()
        tokenizer = self._tokenizer
        inputs = left_pad(tokenizer, prompts, self.device)
        eos_ids = sorted({tokenizer.eos_token_id, tokenizer.pad_token_id} - {None})
        out = sample(self._model, **inputs, max_new_tokens=max_tokens, eos_ids=eos_ids,
                     pad_id=tokenizer.pad_token_id, temperature=temperature, generator=generator)
        results = []
        for row in range(len(prompts)):
            n = int(out.lengths[row])
            text = tokenizer.decode(out.tokens[row, :n].tolist(), skip_special_tokens=True)
            results.append((text, "stop" if bool(out.finished[row]) else "length", n))
        return results

    def complete(self, requests: Sequence[ChatRequest], on_result: OnResult) -> dict[str, str]:
        """Answer ``requests`` batch by batch (see `cmt.teachers.chat.ChatTeacher.complete`); never fails one."""
        self.check()
        generator = torch.Generator(self.device).manual_seed(self.seed)
        prompts = {r.key: self.prompt(r.messages) for r in requests}
        ordered = sorted(requests, key=lambda r: -len(prompts[r.key]))
        batch: list[ChatRequest] = []
        for request in ordered:
            if batch and sum(r.n for r in batch) + request.n > self.batch_size:
                self._run_batch(batch, prompts, generator, on_result)
                batch = []
            batch.append(request)
        if batch:
            self._run_batch(batch, prompts, generator, on_result)
        return {}

    def _run_batch(self, batch: list[ChatRequest], prompts: dict[str, str], generator: torch.Generator,
                   on_result: OnResult) -> None:
        rows = [prompts[r.key] for r in batch for _ in range(r.n)]
        with torch.inference_mode():
            outputs = self.generate(rows, self.max_tokens, self.temperature, generator)
        start = 0
        for request in batch:
            mine = outputs[start:start + request.n]
            start += request.n
            on_result(request, ChatResult([t for t, _, _ in mine], [f for _, f, _ in mine], sum(k for _, _, k in mine)))
