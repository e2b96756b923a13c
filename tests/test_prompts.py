"""Templates and chat-template rendering with a tiny local tokenizer (no downloads)."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from engine.inputs.datasets import Question
from engine.inputs.prompts import (
    TemplateError,
    extract_after_marker,
    render_prompt,
    render_template,
    template_fields,
)

WORDS = ["<unk>", "<eos>", "<bos>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>",
         "<think>", "</think>", "Q:", "A:", "2+3?", "Be", "brief.", "5", "{x}", "=5"]
VOCAB = {w: i for i, w in enumerate(WORDS)}

# Qwen3-style switch: enable_thinking=False pre-fills an empty thinking block.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}<|{{ m.role }}|> {{ m.content }} <eos> {% endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|> "
    "{% if enable_thinking is defined and not enable_thinking %}<think> </think> {% endif %}"
    "{%- endif -%}"
)


def tiny_tokenizer(chat_template: str | None = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """Word-level tokenizer whose encoder prepends <bos>, like many real ones."""
    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", VOCAB["<bos>"])])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<eos>", bos_token="<bos>", pad_token="<pad>",
        unk_token="<unk>", additional_special_tokens=["<|user|>", "<|assistant|>",
                                                      "<|system|>"])
    fast.chat_template = chat_template
    return fast


def ids_of(text: str) -> list[int]:
    """Independent reference: one id per whitespace-separated word."""
    return [VOCAB[w] for w in text.split()]


Q = Question("q7", 3, "2+3?", None, "5", None,
             {"question": "2+3?", "final_answer": "5", "solution": None, "id": "q7"})


def test_template_fields() -> None:
    assert template_fields("Q: {question} {{x}} ={final_answer:>3} A:") == {
        "question", "final_answer"}
    assert template_fields("no placeholders {{}}") == set()
    for bad in ("{0}", "{}", "{question.upper}", "{q[0]}"):
        with pytest.raises(TemplateError, match="must name a question field"):
            template_fields(bad)
    with pytest.raises(TemplateError, match="malformed"):
        template_fields("Q: {question")


def test_render_template_literal_braces_and_missing_fields() -> None:
    assert render_template("Q: {question} {{x}} ={final_answer}", Q) == "Q: 2+3? {x} =5"
    with pytest.raises(TemplateError, match=r"question 'q7' \(index 3\) has no 'solution'"):
        render_template("{question} {solution}", Q)
    with pytest.raises(TemplateError, match="has no 'hint'.*final_answer, id, question"):
        render_template("{hint}", Q)


def test_plain_prompt_has_no_added_special_tokens() -> None:
    tok = tiny_tokenizer()
    assert tok("Q:")["input_ids"][0] == VOCAB["<bos>"]  # the encoder would add one
    text, ids = render_prompt(tok, "Q: {question} A:", Q, chat_template=False,
                              system_prompt="", chat_template_kwargs={})
    assert text == "Q: 2+3? A:"
    assert ids == ids_of(text) == [9, 11, 10]


def test_plain_prompt_rejects_chat_only_settings() -> None:
    with pytest.raises(TemplateError, match="only with chat_template = true"):
        render_prompt(tiny_tokenizer(), "{question}", Q, chat_template=False,
                      system_prompt="Be brief.", chat_template_kwargs={})


@pytest.mark.parametrize(("kwargs", "suffix"), [
    ({}, ""),
    ({"enable_thinking": True}, ""),
    ({"enable_thinking": False}, "<think> </think> "),
])
def test_chat_prompt_with_system_and_thinking_switch(kwargs: dict, suffix: str) -> None:
    text, ids = render_prompt(tiny_tokenizer(), "Q: {question}", Q, chat_template=True,
                              system_prompt="Be brief.", chat_template_kwargs=kwargs)
    expected = ("<|system|> Be brief. <eos> <|user|> Q: 2+3? <eos> <|assistant|> " + suffix)
    assert text == expected
    assert ids == ids_of(expected)
    assert ids[0] != VOCAB["<bos>"]  # the template, not the encoder, decides special tokens


def test_chat_prompt_without_system_message() -> None:
    text, _ = render_prompt(tiny_tokenizer(), "{question}", Q, chat_template=True,
                            system_prompt="", chat_template_kwargs={})
    assert text == "<|user|> 2+3? <eos> <|assistant|> "


def test_chat_template_missing_or_failing() -> None:
    with pytest.raises(TemplateError, match="has no chat template; set chat_template = false"):
        render_prompt(tiny_tokenizer(chat_template=None), "{question}", Q, chat_template=True,
                      system_prompt="", chat_template_kwargs={})
    failing = tiny_tokenizer("{{ raise_exception('system messages are not supported') }}")
    with pytest.raises(TemplateError, match="failed on question 'q7'.*not supported"):
        render_prompt(failing, "{question}", Q, chat_template=True, system_prompt="x",
                      chat_template_kwargs={})


def test_extract_after_marker() -> None:
    assert extract_after_marker("<think>a</think>b</think> 42", "</think>") == " 42"
    assert extract_after_marker("<think>never closed", "</think>") is None
    assert extract_after_marker("all of it", "") == "all of it"
    assert extract_after_marker("ends</think>", "</think>") == ""
