"""Verifiers: each rule on positive, negative and edge cases; the pool on raise, hang and crash."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from engine.inputs.datasets import Question
from engine.verify import answers
from engine.verify.verifiers import (
    BuiltinVerifier,
    Verdict,
    VerifierConfigError,
    check_boxed,
    make_verifier,
)


def question(final_answer: str, qid: str = "q") -> Question:
    return Question(qid, 0, "?", None, final_answer, None, {"final_answer": final_answer})


def verdicts(kind: str, final_answer: str, completions: list[str], **kw: object) -> list[Verdict]:
    v = make_verifier(kind, **kw)  # type: ignore[arg-type]
    try:
        return v.verify_many(completions, question(final_answer))
    finally:
        v.close()


def correct(
    kind: str, final_answer: str, completions: list[str], **kw: object
) -> list[bool | None]:
    return [v.correct for v in verdicts(kind, final_answer, completions, **kw)]


def test_numeric_after_last_hashes() -> None:
    got = correct("numeric", "1234", [
        "#### 1,234", "so #### $1,234.00", "#### 1234.", "#### 12 \n#### 1234", "#### 1233",
        "1234", "#### 1234 #### 5", "####\n1234",
    ])
    assert got == [True, True, True, True, False, False, False, True]


def test_numeric_negatives_decimals_and_dollars() -> None:
    assert correct("numeric", "-3", ["#### -3", "#### 3", "#### -3.0000001"]) == [
        True, False, True]
    assert correct("numeric", "5", ["#### $5.00", "#### 5.01"]) == [True, False]
    assert correct("numeric", "0.5", ["#### 1/2", "#### .5"]) == [True, True]


def test_numeric_reference_not_a_number_is_unverifiable() -> None:
    (v,) = verdicts("numeric", "abc", ["#### 3"])
    assert v.correct is None and "not a number" in v.detail


def test_exact_strips_whitespace() -> None:
    assert correct("exact", "Paris", ["  Paris\n", "paris", "Paris."]) == [True, False, False]


def test_gsm8k_strict_then_flexible_records_rule() -> None:
    vs = verdicts("gsm8k", "1234", [
        "so the total is 1,234 apples. #### 1,234", "The answer is $1,234.", "#### 1234 then 7",
        "no digits here", "the answer is 1233 #### 1,233",
    ])
    assert [v.correct for v in vs] == [True, True, True, False, False]
    assert vs[0].detail.startswith("strict") and vs[1].detail.startswith("flexible")
    assert vs[3].detail == "no number found"


def test_gsm8k_flexible_takes_last_number() -> None:
    # lm-eval flexible-extract: last match wins, '$' and ',' and a trailing '.' are ignored.
    assert answers.gsm8k_extract("3 apples cost $12. So 4 cost $16.") == ("$16.", "flexible")
    assert correct("gsm8k", "16", ["3 apples cost $12. So 4 cost $16."]) == [True]
    assert correct("gsm8k", "-5", ["it drops by -5"]) == [True]


def test_boxed_extraction_balanced_braces() -> None:
    assert answers.last_boxed(r"\boxed{1} then \boxed{\frac{1}{\sqrt{2}}} end") == (
        r"\frac{1}{\sqrt{2}}")
    assert answers.last_boxed(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"
    assert answers.last_boxed(r"cut off \boxed{\frac{1}{2}") is None
    assert answers.last_boxed(r"\boxed 7.") == "7."
    assert answers.last_boxed("no box") is None


def test_boxed_normalisation_and_numeric_equality() -> None:
    got = correct("boxed", "0.5", [
        r"\boxed{\frac{1}{2}}", r"\boxed{\dfrac{1}{2}}", r"\boxed{\frac12}", r"\boxed{0.50}",
        r"\boxed{1/2}", r"\boxed{\frac{1}{3}}", "0.5", r"\boxed{$0.5$.}",
    ])
    assert got == [True, True, True, True, True, False, False, True]
    assert correct("boxed", r"\frac{\sqrt{3}}{2}", [
        r"\boxed{\dfrac{\sqrt{3}}{2}}", r"\boxed{\left( \frac{\sqrt{3}}{2} \right)}",
        r"\boxed{\frac{\sqrt{2}}{2}}",
    ]) == [True, False, False]  # parentheses are kept: (x) is not normalised away
    assert correct("boxed", r"\left(3, 4\right)", [r"\boxed{(3,4)}"]) == [True]
    assert correct("boxed", "-\\frac{1}{2}", [r"\boxed{-0.5}", r"\boxed{0.5}"]) == [True, False]
    assert correct("boxed", "90^\\circ", [r"\boxed{90}"]) == [True]
    assert correct("boxed", "1,000", [r"\boxed{1000}"]) == [True]


def test_boxed_reference_may_itself_be_boxed() -> None:
    assert check_boxed(r"\boxed{4}", question(r"The answer is $\boxed{4}$")).correct is True


def test_mc_formats() -> None:
    vs = verdicts("mc", "C", [
        "The answer is (C).", "answer: C", "#### C", r"so \boxed{C}", r"\boxed{\text{C}}",
        "I pick\nC", "(C)", "The answer is (B). Wait, A?", "Clearly, Considering all",
        "A or B... the answer is C",
    ])
    assert [v.correct for v in vs] == [True, True, True, True, True, True, True, False, False,
                                        True]
    assert vs[0].detail == "answer is: C" and vs[2].detail == "####: C"
    assert vs[3].detail == "boxed: C" and vs[5].detail == "last letter: C"
    assert vs[8].detail == "no option letter found"
    # Option I exists (A-J) but the pronoun is not it.
    assert correct("mc", "B", ["Answer: I think it's B", "Answer: I'm sure: B"]) == [True, True]
    assert correct("mc", "I", ["The answer is I.", "#### (I)"]) == [True, True]


def test_answer_after_marker() -> None:
    vs = verdicts("numeric", "7", [
        "<think>#### 7 maybe</think>#### 8", "<think>x</think> y </think>#### 7",
        "<think>#### 7 never closed", "</think>#### 7",
    ], answer_after="</think>")
    assert [v.correct for v in vs] == [False, True, False, True]
    assert "no '</think>' marker" in vs[2].detail


def test_cache_dedupes_and_is_per_question() -> None:
    calls: list[str] = []

    def check(text: str, q: Question) -> Verdict:
        calls.append(text)
        return Verdict(text.strip() == q.final_answer, "counted")

    v = BuiltinVerifier(check, answer_after="</think>")
    out = v.verify_many(["a</think>1", "b</think>1", "a</think>1", "c</think>2"], question("1"))
    assert [x.correct for x in out] == [True, True, True, False]
    assert calls == ["1", "2"]  # distinct answer texts only
    v.verify_many(["a</think>1"], question("1"))
    assert calls == ["1", "2"]  # cached
    out = v.verify_many(["a</think>1"], question("2", qid="other"))
    assert out[0].correct is False and calls == ["1", "2", "1"]  # other question: re-checked


def test_builtin_exception_is_unverifiable_not_fatal() -> None:
    def boom(text: str, q: Question) -> Verdict:
        if text == "bad":
            raise ValueError("odd input")
        return Verdict(True, "ok")

    out = BuiltinVerifier(boom).verify_many(["good", "bad"], question("1"))
    assert out[0].correct is True
    assert out[1] == Verdict(None, "ValueError: odd input")


def test_config_errors() -> None:
    with pytest.raises(VerifierConfigError, match="unknown verifier kind 'regex'"):
        make_verifier("regex")
    with pytest.raises(VerifierConfigError, match="'module:function'"):
        make_verifier("callable", callable_spec="no_colon")
    with pytest.raises(VerifierConfigError, match="cannot import module 'no_such_mod_x'"):
        make_verifier("callable", callable_spec="no_such_mod_x:f")
    with pytest.raises(VerifierConfigError, match="no function 'nope'"):
        make_verifier("callable", callable_spec="engine.verify.answers:nope")
    with pytest.raises(VerifierConfigError, match="timeout_s"):
        make_verifier("callable", callable_spec="engine.verify.answers:parse_number", timeout_s=0)


# --- process pool -------------------------------------------------------------------------

CALLABLES = '''
import os, time

def equals(completion, question):
    return completion.strip() == question.final_answer

def misbehave(completion, question):
    if completion == "raise":
        raise RuntimeError("verifier bug")
    if completion == "hang":
        time.sleep(60)
    if completion == "crash":
        os._exit(3)
    if completion == "none":
        return None
    if completion == "pair":
        return (True, "custom detail")
    return completion == question.final_answer
'''


@pytest.fixture(scope="module")
def callables_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("callables")
    (root / "opd_test_callables.py").write_text(textwrap.dedent(CALLABLES))
    sys.path.insert(0, str(root))  # spawned workers inherit the parent's sys.path
    yield "opd_test_callables"
    sys.path.remove(str(root))


def test_callable_in_pool_raise_hang_crash_then_usable(callables_module: str) -> None:
    v = make_verifier("callable", callable_spec=f"{callables_module}:misbehave", timeout_s=1.0,
                      workers=1)
    try:
        pool = v.pool  # type: ignore[attr-defined]
        v.verify_many(["warm-up"], question("ok"))  # worker start-up is not a timed call
        hung_worker = pool._workers[0].proc
        t0 = time.monotonic()
        out = v.verify_many(["ok", "raise", "hang", "ok2", "crash", "none", "pair", "ok"],
                            question("ok"))
        elapsed = time.monotonic() - t0
        assert [o.correct for o in out] == [True, None, None, False, None, None, True, True]
        assert out[1].detail == "RuntimeError: verifier bug"
        assert out[2].detail == "timed out after 1 s"
        assert "died (exit code 3)" in out[4].detail
        assert "expected a bool" in out[5].detail
        assert out[6].detail == "custom detail"
        assert 1.0 <= elapsed < 8.0, elapsed  # one timeout, two restarts, not 60 s
        assert pool.restarts == 2
        assert not hung_worker.is_alive() and hung_worker.exitcode == -9  # killed, not leaked
        live = [w.proc for w in pool._workers]
        assert all(p.is_alive() for p in live)
        # Pool still usable after the kill + restart; the hang is cached, not re-run.
        t0 = time.monotonic()
        again = v.verify_many(["hang", "ok", "fresh"], question("ok"))
        assert [o.correct for o in again] == [None, True, False]
        assert time.monotonic() - t0 < 0.9
    finally:
        v.close()
    assert all(not p.is_alive() for p in live), "workers leaked after close()"


def test_callable_pool_splits_batches_across_workers(callables_module: str) -> None:
    v = make_verifier("callable", callable_spec=f"{callables_module}:equals", workers=2)
    try:
        completions = [str(i % 7) for i in range(50)] + [f" {i} " for i in range(50)]
        out = v.verify_many(completions, question("3"))
        expected = [c.strip() == "3" for c in completions]
        assert [o.correct for o in out] == expected
        assert len(v.pool._workers) == 2  # type: ignore[attr-defined]
    finally:
        v.close()


def test_worker_dead_while_idle_is_replaced_silently(callables_module: str) -> None:
    v = make_verifier("callable", callable_spec=f"{callables_module}:equals", workers=1)
    try:
        assert v.verify_many(["1"], question("1"))[0].correct is True
        first = v.pool._workers[0].proc  # type: ignore[attr-defined]
        first.kill()
        first.join()
        out = v.verify_many(["2", "1 "], question("1", qid="next"))
        assert [o.correct for o in out] == [False, True]  # no answer blamed for the death
    finally:
        v.close()


def test_math_verify_in_pool() -> None:
    v = make_verifier("math_verify", timeout_s=10.0, workers=1, answer_after="</think>")
    try:
        out = v.verify_many([
            r"<think>maybe 1/3</think> The answer is $\boxed{\frac{1}{2}}$",
            r"</think> so $x = 0.5$",
            r"</think> \boxed{\frac{2}{3}}",
            r"no marker \boxed{\frac{1}{2}}",
        ], question(r"\frac{1}{2}"))
        assert [o.correct for o in out] == [True, True, False, False]
        assert out[0].detail.startswith("math-verify:")
        sets = v.verify_many([r"</think> $\boxed{\{1,2\}}$"], question(r"\{2, 1\}", qid="s"))
        assert sets[0].correct is True
    finally:
        v.close()
