"""Prompt rendering shared by every method, so that compared methods see exactly the same input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cmt.errors import ConfigError

DEFAULT_TEMPLATE = "Question: {question}\nAnswer:"


def render_prompt(question: str, template: str = DEFAULT_TEMPLATE, tokenizer: Any = None,
                  use_chat_template: bool = True, *, exemplars: Sequence[Mapping[str, str]] = (),
                  shots: int = 0, target_prefix: str = " ") -> str:
    """The text the student sees before its answer.

    Args:
        question: The problem text.
        template: A ``str.format`` template with a ``{question}`` field.
        tokenizer: When given and it has a chat template (and ``use_chat_template``), the rendered
            template becomes the user turn of a chat, followed by the assistant's generation prompt.
        exemplars: Worked examples (``question``, ``answer``) for few-shot prompts (``prompt.exemplars``).
        shots: How many of ``exemplars``, from the first, come before the question (0: zero-shot). In a
            chat they are earlier user/assistant turns; in plain text each is the template followed by
            ``target_prefix`` and its answer, as a training sequence is, then a blank line.
        target_prefix: What separates a plain-text prompt from its answer (``prompt.target_prefix``).

    Raises:
        ConfigError: ``shots`` is negative or more than there are exemplars.
    """
    if not 0 <= shots <= len(exemplars):
        raise ConfigError(f"prompt.shots={shots} must be between 0 and the {len(exemplars)} prompt.exemplars")
    examples = [(template.format(question=e["question"]), e["answer"]) for e in exemplars[:shots]]
    text = template.format(question=question)
    if use_chat_template and tokenizer is not None and getattr(tokenizer, "chat_template", None):
        turns = [turn for q, a in examples for turn in ({"role": "user", "content": q},
                                                        {"role": "assistant", "content": a})]
        return tokenizer.apply_chat_template(
            [*turns, {"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return "".join(f"{q}{target_prefix}{a}\n\n" for q, a in examples) + text


def answer_sentence(answer: str) -> str:
    """The closing sentence every training target ends with; strict answer extraction looks for it."""
    return f"The answer is {answer}."
