"""TUI latency on a big synthetic run: cold start to first paint, question list, token steps.

    .venv/bin/python benchmarks/bench_tui.py [--db PATH] [--steps 100]

Builds the database with synthetic_runs unless --db exists: 20,000 questions x 4 rollouts
(20-200 tokens) plus 40 rollouts of 32,000 tokens (~9.6M tokens), 4 teachers + 2 controls,
4 signals, 6 candidates per node, 2% of tokens probed (what an `entropy:32`-like node strategy
gives). Then:

- cold start: the real CLI in a pseudo-terminal, timed until the first screen's text (first
  paint) and the headline table (first query) arrive on the terminal;
- in-app latencies, measured inside the app rather than through the test harness: a key is
  timed from the moment the driver receives it until the compositor has written the frame that
  shows its effect. Pilot's own waiting (it polls for idleness after every key) is reported
  separately so it is not mistaken for the app's cost;
- the inspector: key to inspector content shown (includes the 50 ms debounce and the query).

Goals (issue 5): first paint < 1 s, token step p95 < 30 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TEACHERS = ("strong", "specialist", "self_answer", "self_solution")


def build(path: Path) -> None:
    from synthetic_runs import write_fixture_db

    t0 = time.perf_counter()
    write_fixture_db(path, questions=20_000, rollouts=4, min_len=20, max_len=200,
                     long_rollouts=40, long_len=32_000, teachers=TEACHERS, candidates=6,
                     probed_share=0.02, seed=0)
    print(f"built {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s")


def cold_start(path: Path, markers: tuple[bytes, bytes] = (b"probed nodes", b"effect size"),
               size: tuple[int, int] = (120, 40)) -> tuple[float, float]:
    """Seconds from exec of the CLI until each marker's text reaches the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    env = dict(os.environ, TERM="xterm-256color")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "opd_tui.cli", str(path)], stdin=slave,
                            stdout=slave, stderr=slave, cwd=REPO, env=env, close_fds=True)
    os.close(slave)
    buf, hits = b"", {}
    while len(hits) < len(markers) and time.perf_counter() - t0 < 60:
        ready, _, _ = select.select([master], [], [], 0.005)
        if ready:
            try:
                buf += os.read(master, 1 << 16)
            except OSError:
                break
            now = time.perf_counter() - t0
            hits.update({m: now for m in markers if m not in hits and m in buf})
    os.write(master, b"q")
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
    os.close(master)
    return hits.get(markers[0], float("nan")), hits.get(markers[1], float("nan"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.1f} ms, p95 {pct(values, 0.95):.1f} ms"


class PaintClock:
    """Key-to-paint timing inside the app: driver receives a key -> next compositor write."""

    def __init__(self, app: Any) -> None:
        from textual.screen import Screen

        self.sent: float | None = None
        self.latencies: list[float] = []
        original_refresh = Screen._compositor_refresh
        clock = self

        def refresh(screen: Screen) -> None:
            original_refresh(screen)
            if clock.sent is not None:
                clock.latencies.append(1000 * (time.perf_counter() - clock.sent))
                clock.sent = None

        Screen._compositor_refresh = refresh  # type: ignore[method-assign]
        driver = app._driver
        send = driver.send_message

        def send_and_mark(message: Any) -> None:
            clock.sent = time.perf_counter()
            send(message)

        driver.send_message = send_and_mark


async def interactive(path: Path, steps: int) -> None:
    from opd_tui.app import make_app
    from opd_tui.screens.questions import QuestionsScreen
    from opd_tui.screens.rollout import RolloutScreen
    from opd_tui.widgets.token_view import TokenView

    app = make_app(path)
    async with app.run_test(size=(160, 48)) as pilot:
        async def settle() -> None:
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()

        await settle()
        clock = PaintClock(app)
        shown: list[float] = []
        original_append = QuestionsScreen._append

        def append(screen: QuestionsScreen, frame: Any) -> None:
            original_append(screen, frame)
            shown.append(time.perf_counter())

        QuestionsScreen._append = append  # type: ignore[method-assign]
        t0 = time.perf_counter()
        await pilot.press("enter")
        await settle()
        print(f"question list first page: {1000 * (shown[0] - t0):.0f} ms "
              f"({app.screen.frame.height} rows of {app.info.counts['questions']:,})")
        t0 = time.perf_counter()
        await pilot.press("G")  # last row of the page: loads the next page
        await settle()
        print(f"question list, next page on reaching the end: {1000 * (shown[-1] - t0):.0f} ms "
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
        screen.INSPECTOR_DELAY = 60.0  # cursor steps alone first; the inspector below
        for label, key in (("token step (l)", "l"), ("line step (j)", "j"),
                           ("next significant (n)", "n")):
            clock.latencies.clear()
            harness = []
            for _ in range(steps):
                t0 = time.perf_counter()
                await pilot.press(key)
                harness.append(1000 * (time.perf_counter() - t0))
                await asyncio.sleep(0.02)  # a person's key repeat, not a flood
            print(f"{label}: key to paint {summary(clock.latencies)} (cursor at {view.cursor:,})"
                  f"; through Pilot.press {summary(harness)}")
        screen.INSPECTOR_DELAY = 0.05
        inspector: list[float] = []
        original_detail = RolloutScreen._show_detail

        def detail(self: RolloutScreen, d: Any) -> None:
            original_detail(self, d)
            inspector.append(1000 * (time.perf_counter() - key_at))

        RolloutScreen._show_detail = detail  # type: ignore[method-assign]
        for _ in range(min(steps, 30)):
            key_at = time.perf_counter()
            await pilot.press("n")
            await asyncio.sleep(0.25)
            await settle()
        print(f"key to inspector shown (50 ms debounce + 3 queries + render): {summary(inspector)}")
        clock.latencies.clear()
        await pilot.press("G")
        await pilot.pause()
        print(f"jump to last token: {clock.latencies[0]:.1f} ms")
        t0 = time.perf_counter()
        await pilot.press("t")
        await settle()
        print(f"switch teacher (re-colour {n:,} tokens): {1000 * (time.perf_counter() - t0):.0f} "
              "ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=REPO / "benchmarks" / "out" / "tui10m.duckdb")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))  # synthetic_runs writes the run file
    if not args.db.exists():
        args.db.parent.mkdir(parents=True, exist_ok=True)
        build(args.db)
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    runs = [cold_start(args.db) for _ in range(args.cold_runs)]
    first = statistics.median(r[0] for r in runs)
    headline = statistics.median(r[1] for r in runs)
    print(f"cold start to first paint (median of {len(runs)}): {1000 * first:.0f} ms; headline "
          f"table painted: {1000 * headline:.0f} ms")
    asyncio.run(interactive(args.db, args.steps))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
