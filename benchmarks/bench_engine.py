"""Engine throughput: continuations/s and generated tokens/s for one question set, batching all
nodes of a rollout together (the engine's plan) against one candidate's N continuations per call
(the naive plan), measured in the same run on the same models.

    python benchmarks/bench_engine.py [--config sample_data/demo.toml] [--questions 3]

Without --config it builds a tiny random world in a temp dir (hidden 64, 2 layers).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def measure(cfg, questions) -> dict[str, float]:  # noqa: ANN001
    from engine.run.orchestrate import process_question
    from engine.run.world import load_world

    world = load_world(cfg)
    t0 = time.perf_counter()
    conts = toks = 0
    for q in questions:
        _, st = process_question(world, q)
        conts += st.n_continuations
        toks += st.generated_tokens
    secs = time.perf_counter() - t0
    world.close()
    return {"seconds": secs, "continuations": conts, "tokens": toks,
            "cont_per_s": conts / secs, "tok_per_s": toks / secs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from engine.models.allocator import tune_allocator

    tune_allocator()  # as opd-engine's entry point does, so the figures compare
    from engine.inputs.config import parse_config
    from engine.run.world import load_run_questions

    with tempfile.TemporaryDirectory() as tmp:
        if args.config is None:
            from tiny_world import make_world

            path = make_world(Path(tmp), questions=args.questions, max_new=24, rollouts=2, n=16)
        else:
            path = args.config
        cfg = parse_config(path)
        qs = load_run_questions(cfg, args.questions)
        batched = measure(cfg, qs)
        one = cfg.continuations.model_copy(update={"batch_size": cfg.continuations.n})
        naive = measure(cfg.model_copy(update={"continuations": one}), qs)
    print(f"device cpu, {args.threads} threads, {len(qs)} questions, "
          f"{batched['continuations']:,} continuations, {batched['tokens']:,} generated tokens")
    for name, m in (("all nodes of a rollout per call", batched),
                    ("one candidate (N rows) per call", naive)):
        print(f"  {name:34s} {m['seconds']:7.1f} s  {m['cont_per_s']:8,.0f} cont/s  "
              f"{m['tok_per_s']:9,.0f} tok/s")
    print(f"  speed-up of batching: {naive['seconds'] / batched['seconds']:.1f}x")


if __name__ == "__main__":
    main()
