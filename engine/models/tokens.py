"""Exact token text and bytes.

Byte-level BPE tokens can hold part of a UTF-8 character: decoding one alone gives U+FFFD and
loses the bytes. We keep the bytes faithfully (the TUI decides how to display them) by undoing
the byte-to-unicode map of byte-level vocabularies and SentencePiece's <0xNN> byte fallback.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@cache
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None) or \
        getattr(tokenizer, "_tokenizer", None)
    dec = getattr(backend, "decoder", None)
    return dec is not None and "ByteLevel" in type(dec).__name__ + repr(dec)[:200]


class TokenTexts:
    """Per-id text and bytes for one tokenizer, memoised (vocabularies are reused constantly)."""

    def __init__(self, tokenizer: Any):
        self.tok = tokenizer
        self.byte_level = _is_byte_level(tokenizer)
        self.special = set(int(i) for i in tokenizer.all_special_ids)
        self._memo: dict[int, tuple[str, bytes]] = {}

    def get(self, token_id: int) -> tuple[str, bytes]:
        hit = self._memo.get(token_id)
        if hit is not None:
            return hit
        text = self.tok.decode([token_id], skip_special_tokens=False)
        raw: bytes | None = None
        piece = self.tok.convert_ids_to_tokens(token_id)
        if isinstance(piece, str):
            m = _BYTE_FALLBACK.match(piece)
            if m:
                raw = bytes([int(m.group(1), 16)])
            elif self.byte_level and token_id not in self.special:
                table = _unicode_to_byte()
                if all(ch in table for ch in piece):
                    raw = bytes(table[ch] for ch in piece)
        if raw is None:
            raw = text.encode("utf-8", "surrogatepass")
        self._memo[token_id] = (text, raw)
        return text, raw
