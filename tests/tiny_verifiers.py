"""User-callable verifiers for engine tests (imported by spawned verifier workers)."""

from __future__ import annotations

from typing import Any


def has_seven(completion: str, question: Any) -> bool:
    """Succeeds often enough on random tiny models to give nodes a signal."""
    return "7" in completion


def exploding(completion: str, question: Any) -> bool:
    raise RuntimeError("verifier bug")


def flaky_seven(completion: str, question: Any) -> bool:
    """has_seven, except that a third of the completions cannot be judged."""
    if len(completion) % 3 == 0:
        raise TimeoutError("verifier timed out (simulated)")
    return "7" in completion


def even_length(completion: str, question: Any) -> bool:
    """Succeeds on about half of any model's completions (parity of the character codes):
    almost every node has signal."""
    return sum(map(ord, completion)) % 2 == 0
