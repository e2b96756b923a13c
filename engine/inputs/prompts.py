"""Prompt rendering: templates over question fields, optionally through a chat template.

Prompt and response are tokenised separately and their ids concatenated, because every teacher
must score exactly the student's response tokens y_<t after its own prompt (method.md): the
response ids are never re-tokenised together with a different prompt. Torch-free.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from engine.inputs.datasets import Question


class TemplateError(Exception):
    """A template or chat template that cannot be rendered; the message says how to fix it."""


def template_fields(template: str) -> set[str]:
    """Names of the {field} placeholders, for validating a config before any model loads."""
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise TemplateError(
            f"template {template!r} is malformed ({e}); write literal braces as {{{{ and }}}}"
        ) from None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise TemplateError(
                f"template {template!r} has placeholder {{{name}}}; placeholders must name a "
                f"question field, e.g. {{question}}, {{solution}}, {{final_answer}}"
            )
        names.add(name)
    return names


def render_template(template: str, q: Question) -> str:
    """str.format over the question's fields; a missing or empty field names the question."""
    for name in template_fields(template):
        if q.fields.get(name) is None:
            available = ", ".join(sorted(k for k, v in q.fields.items() if v is not None))
            raise TemplateError(
                f"template {template!r} uses {{{name}}} but question {q.id!r} (index {q.idx}) "
                f"has no {name!r}; fields available: {available}"
            )
    try:
        return template.format_map(q.fields)
    except (ValueError, TypeError) as e:  # a format spec that does not suit the value
        raise TemplateError(f"template {template!r} on question {q.id!r}: {e}") from None


def render_prompt(
    tokenizer: Any,
    template: str,
    q: Question,
    *,
    chat_template: bool,
    system_prompt: str,
    chat_template_kwargs: Mapping[str, Any],
) -> tuple[str, list[int]]:
    """(prompt text, prompt ids) for one model's view of a question.

    Plain: the rendered template tokenised without special tokens, so that the ids are exactly
    those of the text and a BOS the tokenizer would add does not shift the response positions.
    Chat: the rendered template as the user message (after an optional system message) through
    the tokenizer's own chat template with the generation prompt; the template writes any
    special tokens itself, so the text is again tokenised without adding any.
    """
    content = render_template(template, q)
    name = getattr(tokenizer, "name_or_path", "") or "this tokenizer"
    if not chat_template:
        if system_prompt or chat_template_kwargs:
            raise TemplateError(
                f"system_prompt and chat_template_kwargs apply only with chat_template = true "
                f"(model {name}); set chat_template = true or remove them"
            )
        return content, _encode(tokenizer, content)
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError(
            f"tokenizer of {name} has no chat template; set chat_template = false and write the "
            f"full prompt in the template, or use a model that ships one"
        )
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": content})
    try:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **dict(chat_template_kwargs)
        )
    except Exception as e:  # jinja2 errors, raise_exception() inside templates
        raise TemplateError(
            f"chat template of {name} failed on question {q.id!r}: {type(e).__name__}: {e}"
        ) from None
    return text, _encode(tokenizer, text)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def extract_after_marker(text: str, marker: str) -> str | None:
    """Text after the LAST `marker` (e.g. '</think>'), None without one; '' marker = all text."""
    if not marker:
        return text
    head, sep, tail = text.rpartition(marker)
    return tail if sep else None
