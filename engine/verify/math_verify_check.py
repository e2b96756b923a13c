"""math-verify as a pool verifier target (`engine.verify.math_verify_check:check`).

A module of its own so that importing it imports math-verify and SymPy (seconds) while the
worker starts, before the first timed call. math-verify times out with `signal.alarm`, which
works only in a process's main thread: the pool's workers run checks there.
"""

from __future__ import annotations

from math_verify import parse, verify

from engine.inputs.datasets import Question

_gold_cache: dict[str, list] = {}


def _parse_gold(final_answer: str) -> list:
    """The reference, wrapped in $...$ when bare so the LaTeX extractor sees it as maths."""
    if final_answer not in _gold_cache:
        text = final_answer if ("$" in final_answer or "\\boxed" in final_answer) else (
            f"${final_answer}$")
        _gold_cache[final_answer] = parse(text)
    return _gold_cache[final_answer]


def check(text: str, question: Question) -> tuple[bool | None, str]:
    """(verify(gold, answer), parsed answer); None when the reference itself does not parse."""
    gold = _parse_gold(question.final_answer or "")
    if not gold:
        return None, f"math-verify cannot parse the reference {question.final_answer!r}"
    answer = parse(text)
    if not answer:
        return False, "math-verify: no answer extracted"
    return bool(verify(gold, answer)), f"math-verify: {answer[-1]}"
