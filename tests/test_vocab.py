"""True vocabulary size, padded logits and teacher/student tokenizer compatibility."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from engine.models.vocab import (
    VocabMismatchError,
    check_compatible,
    mask_padded_logits,
    slice_logits,
    true_vocab_size,
)

WORDS = ["<unk>", "<eos>", "<bos>", "<pad>", "<|im_end|>", "the", "cat", "sat", "on", "mat"]


def tokenizer(words: list[str] = WORDS, *, eos: str = "<eos>") -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token="<bos>",
                                   pad_token="<pad>", unk_token="<unk>")


def mismatch(student: PreTrainedTokenizerFast, teacher: PreTrainedTokenizerFast) -> str:
    with pytest.raises(VocabMismatchError) as e:
        check_compatible(student, teacher, student_name="stud", teacher_name="teach")
    return str(e.value)


def test_true_vocab_size_counts_added_tokens() -> None:
    tok = tokenizer()
    assert true_vocab_size(tok) == len(WORDS)
    tok.add_tokens(["<extra>"])
    assert true_vocab_size(tok) == len(WORDS) + 1


def test_identical_tokenizers_are_compatible() -> None:
    check_compatible(tokenizer(), tokenizer(), student_name="s", teacher_name="t")


def test_renamed_token_is_named() -> None:
    renamed = [w if w != "sat" else "sit" for w in WORDS]
    msg = mismatch(tokenizer(), tokenizer(renamed))
    assert "id 7: 'sat' in student stud but 'sit' in teacher teach" in msg


def test_same_size_different_order_is_caught() -> None:
    swapped = WORDS[:5] + ["cat", "the"] + WORDS[7:]
    assert "id 5: 'the' in student stud but 'cat'" in mismatch(tokenizer(), tokenizer(swapped))


def test_added_token_in_teacher_is_named() -> None:
    teacher = tokenizer()
    teacher.add_tokens(["<tool>"])
    msg = mismatch(tokenizer(), teacher)
    assert f"id {len(WORDS)}: no token in student stud but '<tool>'" in msg


def test_different_eos_is_an_error() -> None:
    msg = mismatch(tokenizer(), tokenizer(eos="<|im_end|>"))
    assert msg.startswith("eos_token differs: id 1 ('<eos>') in student stud but id 4 "
                          "('<|im_end|>') in teacher teach")


def test_slice_logits_drops_padding_as_a_view() -> None:
    logits = torch.randn(2, 3, 12)  # output layer padded from 10 tokens to 12
    sliced = slice_logits(logits, 10)
    assert sliced.shape == (2, 3, 10)
    assert sliced.data_ptr() == logits.data_ptr()  # no copy of a 150k-wide tensor
    torch.testing.assert_close(sliced, logits[:, :, :10])
    assert slice_logits(logits, 12).shape == logits.shape
    with pytest.raises(VocabMismatchError, match="outputs 12 logits but its tokenizer has 13"):
        slice_logits(logits, 13)


def test_mask_padded_logits_matches_softmax_over_true_vocab() -> None:
    logits = torch.randn(4, 12, dtype=torch.float64)
    masked = mask_padded_logits(logits, 10)
    probs = torch.softmax(masked, dim=-1)
    assert torch.all(probs[:, 10:] == 0)
    torch.testing.assert_close(probs[:, :10], torch.softmax(logits[:, :10], dim=-1))
    assert torch.equal(logits[:, 10:].isfinite(), torch.ones(4, 2, dtype=torch.bool))  # untouched
