"""`opd-tui [FILE.duckdb | RUN_DIR]`: open a run in the terminal UI.

Options are declared in `build_parser`, so non-interactive modes (e.g. `--query`) are one
`add_argument` and one branch in `main` away.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.runfile.demo import DEMO_DB, how_to_get_demo, sample_data_dir

DEMO = sample_data_dir(DEMO_DB) / DEMO_DB
"""The demo run: in a checkout's sample_data/, $OPD_SAMPLE_DATA, ./sample_data or the user's."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opd-tui", description="Browse an OPD diagnostic run: where each teacher helps "
        "and where it hurts, token by token. Opens read-only.")
    parser.add_argument("path", nargs="?", type=Path, default=None,
                        help="run .duckdb file or run directory (default: the demo database)")
    parser.add_argument("--query", metavar="SQL", default=None,
                        help="run SQL without the UI (read-only, same sandbox as the console)")
    parser.add_argument("--format", choices=("csv", "json", "parquet"), default="csv",
                        help="--query output: csv, json (JSON lines) or parquet (needs --output)")
    parser.add_argument("--output", metavar="PATH", type=Path, default=None,
                        help="--query result file (default: stdout)")
    return parser


def resolve_path(path: Path | None) -> Path:
    if path is not None:
        return path
    if not DEMO.exists():
        raise SystemExit(f"opd-tui: no path given, and {how_to_get_demo(DEMO)}.\n"
                         "Or pass a run: opd-tui RUN.duckdb")
    return DEMO


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = resolve_path(args.path)
    if args.query is not None:
        from opd_tui.sql.batch import run_query_cli

        return run_query_cli(path, args.query, args.format, args.output)
    from opd_tui.app import make_app
    from opd_tui.queries import OpenError

    try:
        app = make_app(path)
    except OpenError as e:
        print(f"opd-tui: {e}", file=sys.stderr)
        return 2
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
