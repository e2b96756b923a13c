"""The tokenizer's true vocabulary, and whether a teacher shares the student's.

Models often pad their output layer beyond the tokenizer (151,936 logits for 151,665 tokens):
the padded columns are not tokens, and a softmax over them leaks mass into ids no text can
contain. Teachers score the student's token ids, so they must mean the same tokens: equal sizes
are not enough (a renamed or repurposed special token keeps the size).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

_SPECIALS = ("eos_token_id", "bos_token_id", "pad_token_id")


class VocabMismatchError(Exception):
    """Teacher and student tokenizers disagree; the message names the first difference."""


def true_vocab_size(tokenizer: Any) -> int:
    """Number of token ids the tokenizer can produce, added tokens included."""
    return len(tokenizer)


def check_compatible(
    student_tok: Any, teacher_tok: Any, *, student_name: str, teacher_name: str
) -> None:
    """Raise VocabMismatchError unless both map every token to the same id, specials included."""
    s_by_id = {i: t for t, i in student_tok.get_vocab().items()}
    t_by_id = {i: t for t, i in teacher_tok.get_vocab().items()}
    if s_by_id != t_by_id:
        for i in sorted(s_by_id.keys() | t_by_id.keys()):
            s, t = s_by_id.get(i), t_by_id.get(i)
            if s != t:
                raise VocabMismatchError(
                    f"tokenizers differ at id {i}: {_show(s)} in student {student_name} but "
                    f"{_show(t)} in teacher {teacher_name} (vocabularies: {len(s_by_id)} vs "
                    f"{len(t_by_id)} tokens); a teacher must use the student's tokenizer"
                )
    for attr in _SPECIALS:
        s_id, t_id = getattr(student_tok, attr, None), getattr(teacher_tok, attr, None)
        if s_id != t_id:
            raise VocabMismatchError(
                f"{attr.removesuffix('_id')} differs: id {s_id} ({_show(s_by_id.get(s_id))}) in "
                f"student {student_name} but id {t_id} ({_show(t_by_id.get(t_id))}) in teacher "
                f"{teacher_name}; a teacher must use the student's tokenizer and special tokens"
            )


def _show(token: str | None) -> str:
    return "no token" if token is None else repr(token)


def slice_logits(logits: Tensor, vocab_size: int) -> Tensor:
    """logits[..., :vocab_size], a view: padded output-layer columns are not tokens."""
    if logits.shape[-1] < vocab_size:
        raise VocabMismatchError(
            f"model outputs {logits.shape[-1]} logits but its tokenizer has {vocab_size} tokens; "
            f"the tokenizer does not belong to this model"
        )
    return logits[..., :vocab_size]


def mask_padded_logits(logits: Tensor, vocab_size: int) -> Tensor:
    """A copy with padded columns at -inf, for code that needs the model's full width."""
    masked = logits.clone()
    if logits.shape[-1] < vocab_size:
        return slice_logits(logits, vocab_size)  # raises the same clear error
    masked[..., vocab_size:] = float("-inf")
    return masked
