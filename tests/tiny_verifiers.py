"""User-callable verifiers for engine tests (imported by spawned verifier workers)."""

from __future__ import annotations

from typing import Any


def has_seven(completion: str, question: Any) -> bool:
    """Succeeds often enough on random tiny models to give nodes a signal."""
    return "7" in completion


def exploding(completion: str, question: Any) -> bool:
    raise RuntimeError("verifier bug")
