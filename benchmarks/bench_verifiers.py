"""Verifier throughput: completions per second, builtin in-process vs a callable in the pool.

    .venv/bin/python -m benchmarks.bench_verifiers [--n 20000] [--workers 2]

Completions are distinct (no cache hits) GSM8K-style texts of ~300 characters, so the numbers
are the cost of checking, not of the cache; a second pass over the same texts measures the
cache. The pooled callable is a trivial one: its rate is the pool's overhead ceiling.
"""

from __future__ import annotations

import argparse
import time

from engine.inputs.datasets import Question
from engine.verify.verifiers import make_verifier

FILLER = "Step: we add the numbers carefully and check the units again. " * 4


def completions(n: int) -> list[str]:
    return [f"{FILLER} variant {i}. So the answer is {i % 50}.\n#### {i % 50}" for i in range(n)]


def exact_tail(completion: str, question: Question) -> bool:
    """Trivial callable: the pool's overhead, not the verifier's work, sets its rate."""
    return completion.rsplit("####", 1)[-1].strip() == question.final_answer


def rate(kind: str, texts: list[str], q: Question, **kw: object) -> tuple[float, float]:
    v = make_verifier(kind, **kw)  # type: ignore[arg-type]
    try:
        v.verify_many(texts[:8], Question("warm", 0, "", None, "7", None, {}))  # start workers
        t0 = time.perf_counter()
        out = v.verify_many(texts, q)
        cold = len(texts) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        v.verify_many(texts, q)
        cached = len(texts) / (time.perf_counter() - t0)
    finally:
        v.close()
    assert sum(o.correct is True for o in out) == sum(t.endswith("#### 7") for t in texts)
    return cold, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    texts = completions(args.n)
    q = Question("q", 0, "?", None, "7", None, {})
    for label, kind, kw in [
        ("numeric (in-process)", "numeric", {}),
        ("gsm8k (in-process)", "gsm8k", {}),
        (f"callable (pool, {args.workers} workers)", "callable",
         {"callable_spec": "benchmarks.bench_verifiers:exact_tail", "workers": args.workers}),
    ]:
        cold, cached = rate(kind, texts, q, **kw)
        print(f"{label:32s} {cold:>10,.0f} completions/s   cached {cached:>12,.0f}/s")


if __name__ == "__main__":
    main()
