"""SQL console benchmark: time to first page and memory while scrolling a full-table SELECT.

    .venv/bin/python benchmarks/bench_console.py [--db PATH] [--questions N] [--scroll-rows N]

Builds a fixture run with synthetic_runs (unless --db names one), then in one process measures
DuckDB's own time to first Arrow batch (the baseline), the console core's time to first page
(statement check + stream + first page resident), and RSS while scrolling the result page by
page: with the bounded page cache, RSS should stay flat however far one scrolls.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # synthetic run files
from synthetic_runs import write_fixture_db  # noqa: E402

from opd_tui.console.screen import MEMORY_LIMIT
from opd_tui.sql import RowWindow, open_sandbox, start_query

SQL = "SELECT * FROM scores"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path)
    ap.add_argument("--questions", type=int, default=2500)
    ap.add_argument("--max-len", type=int, default=8000)
    ap.add_argument("--scroll-rows", type=int, default=2_000_000)
    ap.add_argument("--memory-limit", default=MEMORY_LIMIT,
                    help="DuckDB buffer pool cap, as in the console ('' = none)")
    args = ap.parse_args()
    db = args.db
    if db is None:
        db = Path(tempfile.mkdtemp()) / "bench.duckdb"
        t0 = time.perf_counter()
        write_fixture_db(db, questions=args.questions, rollouts=4, min_len=args.max_len // 2,
                         max_len=args.max_len, long_rollouts=4, teachers=("a", "b", "c", "d"),
                         candidates=6, seed=0)
        print(f"fixture built in {time.perf_counter() - t0:.1f} s: {db}")
    con = duckdb.connect(str(db), read_only=True)
    tokens, scores = con.execute(
        "SELECT (SELECT count(*) FROM tokens), (SELECT count(*) FROM scores)").fetchall()[0]
    t0 = time.perf_counter()
    reader = con.sql(SQL).to_arrow_reader(2048)
    reader.read_next_batch()
    duck_first = time.perf_counter() - t0
    reader.close()
    con.close()

    sandbox = open_sandbox(db, export_dir=Path(tempfile.mkdtemp()),
                           memory_limit=args.memory_limit or None)
    rss0 = rss_mib()
    t0 = time.perf_counter()
    stream = start_query(sandbox, SQL, row_limit=10**10)
    window = RowWindow(sandbox, stream)
    window.ensure(0, 256)
    rows = window.rows(0, 40)  # one screen, formatted as the grid reads it
    first_page = time.perf_counter() - t0
    assert len(rows) == 40
    samples = []
    t0 = time.perf_counter()
    for start in range(0, args.scroll_rows, 2048):
        window.ensure(start, start + 40)
        if start % (args.scroll_rows // 10) < 2048:
            samples.append((start, rss_mib()))
    scroll_s = time.perf_counter() - t0
    print(f"load average {os.getloadavg()[0]:.2f}; memory_limit {args.memory_limit}")
    print(f"tokens {tokens:,}  scores rows {scores:,}")
    print(f"DuckDB first batch (baseline): {duck_first * 1000:.0f} ms")
    print(f"console first page: {first_page * 1000:.0f} ms "
          f"(+{(first_page - duck_first) * 1000:.0f} ms beyond DuckDB)")
    print(f"scrolled {args.scroll_rows:,} rows in {scroll_s:.1f} s; RSS MiB at start {rss0:.0f}:")
    print("  " + "  ".join(f"{r:,}:{m:.0f}" for r, m in samples))
    print(f"cached pages at end: {len(window.cached_pages())} (max {window.max_pages})")
    sandbox.close()


if __name__ == "__main__":
    main()
