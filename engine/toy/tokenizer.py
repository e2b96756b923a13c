"""One character-level tokenizer shared by every toy model (teachers must share the vocabulary).

Built with `tokenizers` (WordLevel over single characters, per-character split, Fuse decoder) and
wrapped for transformers, so the toy models load with AutoTokenizer like any real model, offline.
No BOS and no post-processor: training and generation both start directly at the prompt text.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIALS = (PAD, EOS, UNK)
CHARS = "0123456789+-=;,# :QAS"
"""Every character the task and the prompt templates use (digits, operators, separators, tags)."""

VOCAB: dict[str, int] = {tok: i for i, tok in enumerate((*SPECIALS, *CHARS))}
PAD_ID, EOS_ID, UNK_ID = VOCAB[PAD], VOCAB[EOS], VOCAB[UNK]


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left"
    )


def encode(text: str) -> list[int]:
    """Fast path used in training; a test checks it equals the saved tokenizer's encoding."""
    try:
        return [VOCAB[c] for c in text]
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r} is not in the toy vocabulary {CHARS!r}") from e


def decode(ids: list[int]) -> str:
    inverse = {i: t for t, i in VOCAB.items()}
    return "".join(inverse[i] for i in ids if i not in (PAD_ID, EOS_ID))


def save_tokenizer(out_dir: Path) -> None:
    build_tokenizer().save_pretrained(str(out_dir))
