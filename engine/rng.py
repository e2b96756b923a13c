"""Randomness keyed per sequence (method.md): no global generator anywhere in the engine.

Every random number is a pure function of (seed, purpose, question id, rollout, node, candidate,
continuation[, step]), so a resumed run or the same batch plan on another worker reproduces
every row bit for bit.
"""

from __future__ import annotations

import hashlib

import numpy as np

PURPOSES = ("rollout", "branch", "value", "bootstrap", "few_shot", "context")
_MASK64 = (1 << 64) - 1


def sequence_key(
    seed: int,
    purpose: str,
    question_id: str,
    rollout: int = 0,
    node: int = 0,
    candidate: int = 0,
    continuation: int = 0,
) -> int:
    """A 64-bit key for one random sequence."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown randomness purpose {purpose!r}")
    parts = (seed, purpose, question_id, rollout, node, candidate, continuation)
    text = "\x1f".join(str(x) for x in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniforms(keys: np.ndarray, step: int | np.ndarray) -> np.ndarray:
    """One uniform in [0, 1) per key for decoding step `step` (counter-based, stateless).

    `step` is one int for all keys or an array with one step per key.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    steps = np.broadcast_to(np.asarray(step, dtype=np.int64).astype(np.uint64), keys.shape)
    with np.errstate(over="ignore"):
        mixed = _splitmix64(keys ^ _splitmix64(steps))
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def generator(key: int) -> np.random.Generator:
    """A numpy generator for one keyed stream (bootstrap draws, subsampling)."""
    return np.random.Generator(np.random.Philox(key=key & _MASK64))
