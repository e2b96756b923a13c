"""TUI latency on a big synthetic run: cold start to first paint, question list, token steps.

    .venv/bin/python benchmarks/bench_tui.py --tokens 10_000_000 [--db PATH] [--probed-share S]

Builds the database with engine.fixtures (4 teachers + 2 controls, 4 signals, 6 candidates per
node, some 32k-token rollouts) unless --db exists, then drives the real app headless (Pilot).
A token step is timed from the key press until the cursor line is repainted; the inspector's
query for the new token runs in a worker and is timed separately. Goals: first paint < 1 s,
token step p95 < 30 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build(path: Path, tokens: int, probed_share: float) -> None:
    from engine.fixtures import write_fixture_db

    rollouts, long_len, mean_len = 4, 32_000, 1_000
    long_rollouts = max(2, tokens // 1_000_000)
    questions = max(2, (tokens - long_rollouts * long_len) // (rollouts * mean_len))
    t0 = time.perf_counter()
    write_fixture_db(path, questions=questions, rollouts=rollouts, min_len=200,
                     max_len=2 * mean_len - 200, long_rollouts=long_rollouts, long_len=long_len,
                     teachers=("strong", "specialist", "self_answer", "weak"),
                     candidates=6, probed_share=probed_share, seed=0)
    print(f"built {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s")


def cold_first_paint(path: Path) -> tuple[float, float]:
    """Fresh interpreter: imports + open + first paint, and until the headline is painted."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import asyncio\n"
        "from opd_tui.app import make_app\n"
        "async def go():\n"
        f"    app = make_app({str(path)!r})\n"
        "    async with app.run_test(size=(120, 40)) as pilot:\n"
        "        await pilot.pause()\n"
        "        print(time.perf_counter() - t0)\n"
        "        await app.workers.wait_for_complete(); await pilot.pause()\n"
        "        print(time.perf_counter() - t0)\n"
        "asyncio.run(go())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    first, headline = out.stdout.strip().splitlines()[-2:]
    return float(first), float(headline)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def interactive(path: Path, steps: int) -> None:
    from opd_tui.app import make_app
    from opd_tui.screens.rollout import RolloutScreen
    from opd_tui.widgets.token_view import TokenView

    app = make_app(path)
    async with app.run_test(size=(160, 48)) as pilot:
        async def settle() -> None:
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()

        await settle()
        t0 = time.perf_counter()
        await pilot.press("enter")
        await settle()
        print(f"question list first page: {1000 * (time.perf_counter() - t0):.0f} ms "
              f"({app.screen.frame.height} rows)")
        cur = app.db.cursor()
        qid, rollout, n = cur.execute("SELECT question_id, rollout, n_tokens FROM rollouts "
                                      "ORDER BY n_tokens DESC LIMIT 1").fetchall()[0]
        cur.close()
        t0 = time.perf_counter()
        app.open_rollout(qid, rollout, 0)
        await settle()
        screen = app.screen
        assert isinstance(screen, RolloutScreen)
        print(f"open longest rollout ({n:,} tokens): {1000 * (time.perf_counter() - t0):.0f} ms")
        view = screen.query_one(TokenView)
        screen.INSPECTOR_DELAY = 10.0  # time the cursor step alone; the inspector below
        for label, key in (("token step (l)", "l"), ("line step (j)", "j"),
                           ("next significant (n)", "n")):
            step = []
            for _ in range(steps):
                t0 = time.perf_counter()
                await pilot.press(key)
                step.append(1000 * (time.perf_counter() - t0))
            print(f"{label}: p50 {statistics.median(step):.1f} ms, p95 {pct(step, 0.95):.1f} ms"
                  f" (cursor at {view.cursor:,})")
        inspector = []
        for _ in range(min(steps, 30)):
            await pilot.press("l")
            t0 = time.perf_counter()
            screen._inspect(view.cursor)
            await settle()
            inspector.append(1000 * (time.perf_counter() - t0))
        print(f"inspector query + paint: p50 {statistics.median(inspector):.1f} ms, "
              f"p95 {pct(inspector, 0.95):.1f} ms")
        t0 = time.perf_counter()
        await pilot.press("G")
        await pilot.pause()
        print(f"jump to last token: {1000 * (time.perf_counter() - t0):.1f} ms")
        t0 = time.perf_counter()
        await pilot.press("t")
        await settle()
        print(f"switch teacher (re-colour {n:,} tokens): {1000 * (time.perf_counter() - t0):.0f} "
              "ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=10_000_000)
    parser.add_argument("--probed-share", type=float, default=0.1)
    parser.add_argument("--db", type=Path, default=REPO / "benchmarks" / "tui_bench.duckdb")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if not args.db.exists():
        build(args.db, args.tokens, args.probed_share)
    first, headline = cold_first_paint(args.db)
    print(f"cold start to first paint: {1000 * first:.0f} ms; headline and histogram painted: "
          f"{1000 * headline:.0f} ms")
    asyncio.run(interactive(args.db, args.steps))


if __name__ == "__main__":
    main()
