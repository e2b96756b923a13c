"""Verifiers R(x, y): does a completion answer its question correctly? (method.md, Objects)

The engine verifies hundreds of thousands of continuations per run, so every verifier caches its
verdicts per distinct completion of a question and only checks each distinct answer once.
Builtin rules run in-process, wrapped so that an exception makes one completion unverifiable
(correct = None) instead of ending the run. math-verify (signal alarms, SymPy) and users'
`module:function` callables run in a process pool with a per-call timeout
(`engine.verify.pool`).
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.inputs.datasets import Question
from engine.inputs.prompts import extract_after_marker
from engine.verify import answers

KINDS = ("numeric", "exact", "gsm8k", "boxed", "mc", "math_verify", "callable")
MATH_VERIFY_TARGET = "engine.verify.math_verify_check:check"
_CACHED_QUESTIONS = 4  # verdict caches kept (runs go question by question)


@dataclass(frozen=True)
class Verdict:
    correct: bool | None
    """None = unverifiable: the verifier raised or timed out."""
    detail: str
    """Which rule fired and the extracted answer, or the error text."""


class Verifier(Protocol):
    def verify_many(self, completions: Sequence[str], question: Question) -> list[Verdict]: ...

    def close(self) -> None:
        """Release worker processes (a no-op for in-process verifiers)."""


class VerifierConfigError(Exception):
    """Unknown verifier kind or an unusable callable; the message says what to change."""


Check = Callable[[str, Question], Verdict]


def check_numeric(text: str, q: Question) -> Verdict:
    raw = answers.after_last_hashes(text)
    if raw is None:
        return Verdict(False, "no number after '####'")
    return _compare_numbers(raw, q, rule="####")


def check_exact(text: str, q: Question) -> Verdict:
    got = text.strip()
    return Verdict(got == (q.final_answer or "").strip(), f"exact: {got[:80]!r}")


def check_gsm8k(text: str, q: Question) -> Verdict:
    raw, rule = answers.gsm8k_extract(text)
    if raw is None:
        return Verdict(False, "no number found")
    return _compare_numbers(raw, q, rule=rule)


def check_boxed(text: str, q: Question) -> Verdict:
    boxed = answers.last_boxed(text)
    if boxed is None:
        return Verdict(False, "no \\boxed{} answer")
    ref_text = q.final_answer or ""
    ref = answers.normalise_latex(answers.last_boxed(ref_text) or ref_text)
    got = answers.normalise_latex(boxed)
    if got == ref:
        return Verdict(True, f"boxed string: {got}")
    got_value, ref_value = answers.latex_number(got), answers.latex_number(ref)
    if got_value is not None and ref_value is not None:
        return Verdict(answers.numbers_equal(got_value, ref_value), f"boxed number: {got}")
    return Verdict(False, f"boxed string: {got}")


def check_mc(text: str, q: Question) -> Verdict:
    letter, rule = answers.mc_extract(text)
    if letter is None:
        return Verdict(False, "no option letter found")
    return Verdict(letter == (q.final_answer or "").strip().upper(), f"{rule}: {letter}")


def _compare_numbers(raw: str, q: Question, *, rule: str) -> Verdict:
    got = answers.parse_number(raw)
    ref = answers.parse_number(q.final_answer or "")
    if ref is None:
        return Verdict(None, f"reference answer {q.final_answer!r} is not a number")
    if got is None:
        return Verdict(False, f"{rule}: {raw!r} is not a number")
    return Verdict(answers.numbers_equal(got, ref), f"{rule}: {raw}")


BUILTIN_CHECKS: dict[str, Check] = {
    "numeric": check_numeric,
    "exact": check_exact,
    "gsm8k": check_gsm8k,
    "boxed": check_boxed,
    "mc": check_mc,
}


class _CachingVerifier:
    """Shared front: answer_after extraction, de-duplication and the per-question cache."""

    def __init__(self, answer_after: str) -> None:
        self.answer_after = answer_after
        self._cache: OrderedDict[str, dict[str, Verdict]] = OrderedDict()
        self._lock = threading.Lock()  # the runner may verify from a background thread

    def verify_many(self, completions: Sequence[str], question: Question) -> list[Verdict]:
        with self._lock:
            return self._verify_many(completions, question)

    def _verify_many(self, completions: Sequence[str], question: Question) -> list[Verdict]:
        cache = self._cache.pop(question.id, None) or {}
        self._cache[question.id] = cache
        while len(self._cache) > _CACHED_QUESTIONS:
            self._cache.popitem(last=False)
        texts: dict[str, list[str]] = {}  # answer text -> completions that reduce to it
        for c in dict.fromkeys(completions):
            if c in cache:
                continue
            text = extract_after_marker(c, self.answer_after) if self.answer_after else c
            if text is None:
                cache[c] = Verdict(False, f"no {self.answer_after!r} marker in completion")
            else:
                texts.setdefault(text, []).append(c)
        if texts:
            for text, verdict in zip(texts, self._check_many(list(texts), question), strict=True):
                for c in texts[text]:
                    cache[c] = verdict
        return [cache[c] for c in completions]

    def _check_many(self, texts: list[str], question: Question) -> list[Verdict]:
        raise NotImplementedError

    def close(self) -> None:
        self._cache.clear()

    def __enter__(self) -> _CachingVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BuiltinVerifier(_CachingVerifier):
    """A pure-Python rule checked in-process; an exception marks that answer unverifiable."""

    def __init__(self, check: Check, answer_after: str = "") -> None:
        super().__init__(answer_after)
        self.check = check

    def _check_many(self, texts: list[str], question: Question) -> list[Verdict]:
        out = []
        for text in texts:
            try:
                out.append(self.check(text, question))
            except Exception as e:  # a bug on one odd completion must not end a run
                out.append(Verdict(None, f"{type(e).__name__}: {e}"))
        return out


class PooledVerifier(_CachingVerifier):
    """A `module:function` run in worker processes, batched per question, with a timeout."""

    def __init__(self, target: str, *, timeout_s: float, workers: int, answer_after: str) -> None:
        from engine.verify.pool import VerifierPool

        super().__init__(answer_after)
        self.pool = VerifierPool(target, timeout_s=timeout_s, workers=workers)

    def _check_many(self, texts: list[str], question: Question) -> list[Verdict]:
        return [Verdict(c, d) for c, d in self.pool.run(question, texts)]

    def close(self) -> None:
        super().close()
        self.pool.close()


def make_verifier(
    kind: str,
    *,
    callable_spec: str = "",
    timeout_s: float = 5.0,
    answer_after: str = "",
    workers: int = 0,
) -> Verifier:
    """Build the verifier named in `[verifier]`; `workers` = pool size (0 = min(4, CPUs))."""
    if kind in BUILTIN_CHECKS:
        return BuiltinVerifier(BUILTIN_CHECKS[kind], answer_after)
    if timeout_s <= 0:
        raise VerifierConfigError(f"[verifier] timeout_s must be > 0, got {timeout_s}")
    if kind == "math_verify":
        try:
            importlib.import_module("math_verify")
        except ImportError:
            raise VerifierConfigError(
                "verifier kind 'math_verify' needs the math-verify package: "
                "pip install 'opd-diagnostics[math]'"
            ) from None
        target = MATH_VERIFY_TARGET
    elif kind == "callable":
        resolve_callable(callable_spec)  # fail now, in the parent, with a clear message
        target = callable_spec
    else:
        raise VerifierConfigError(
            f"unknown verifier kind {kind!r}; use one of {', '.join(KINDS)}"
        )
    return PooledVerifier(target, timeout_s=timeout_s, workers=workers, answer_after=answer_after)


def resolve_callable(spec: str) -> Callable[..., object]:
    """Import `module:function`; every failure becomes one VerifierConfigError."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise VerifierConfigError(
            f"[verifier] callable must be 'module:function', got {spec!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise VerifierConfigError(
            f"[verifier] callable {spec!r}: cannot import module {module_name!r} "
            f"({type(e).__name__}: {e}); make it importable (on PYTHONPATH or installed)"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise VerifierConfigError(
            f"[verifier] callable {spec!r}: module {module_name!r} has no function {attr!r}"
        )
    return fn
