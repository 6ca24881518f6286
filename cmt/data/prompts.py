"""Prompt rendering shared by every method, so that compared methods see exactly the same input."""

from __future__ import annotations

from typing import Any

DEFAULT_TEMPLATE = "Question: {question}\nAnswer:"


def render_prompt(question: str, template: str = DEFAULT_TEMPLATE, tokenizer: Any = None,
                  use_chat_template: bool = True) -> str:
    """The text the student sees before its answer.

    Args:
        question: The problem text.
        template: A ``str.format`` template with a ``{question}`` field.
        tokenizer: When given and it has a chat template (and ``use_chat_template``), the rendered
            template becomes the user turn of a chat, followed by the assistant's generation prompt.
    """
    text = template.format(question=question)
    if use_chat_template and tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return text


def answer_sentence(answer: str) -> str:
    """The closing sentence every training target ends with; strict answer extraction looks for it."""
    return f"The answer is {answer}."
