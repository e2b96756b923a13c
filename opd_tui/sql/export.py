"""Export a query's full result through DuckDB's own writers (COPY), never through the grid.

COPY streams from the query to the file, so exporting 10 million rows costs no Python memory.
The console exports into its export directory; `--query --output PATH` has DuckDB write into the
sandbox's private outbox and then moves the finished file onto PATH, so DuckDB is never granted
the directory around PATH and a failed or interrupted query leaves PATH untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from engine.runfile.sql import sql_literal
from opd_tui.sql.sandbox import Sandbox
from opd_tui.sql.statements import READ_TYPES, RefusedStatement, check_read_only

FORMATS: dict[str, str] = {
    "csv": "FORMAT csv, HEADER true",
    "parquet": "FORMAT parquet",
    "json": "FORMAT json",  # newline-delimited JSON (JSON lines)
}
SUFFIXES = {"csv": ".csv", "parquet": ".parquet", "json": ".jsonl"}


def export_query(sandbox: Sandbox, sql: str, path: str | os.PathLike[str], fmt: str) -> int:
    """Write the result of `sql` (its last statement must read) to `path`; return rows written.

    A relative `path` is taken inside the export directory; an absolute one must lie inside it
    (the statement check and DuckDB's fence both refuse anything else).
    """
    export_dir = sandbox.ensure_export_dir()
    target = Path(path)
    if not target.is_absolute():
        target = export_dir / target
    return _copy_out(sandbox, sql, target, fmt)


def export_to_file(sandbox: Sandbox, sql: str, path: str | os.PathLike[str], fmt: str) -> int:
    """Write the result of `sql` to `path` anywhere the user may write, via the private outbox.

    The file appears at `path` complete or not at all: it is written in the outbox, copied next
    to `path` under a temporary name and renamed over it.
    """
    target = Path(path)
    staged = sandbox.outbox / f"result{SUFFIXES[fmt]}"
    rows = export_query_staged(sandbox, sql, staged, fmt)
    sibling = target.with_name(f".{target.name}.opd-tmp-{os.getpid()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(staged, sibling)
        os.replace(sibling, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            sibling.unlink()
        staged.unlink(missing_ok=True)
    return rows


def export_query_staged(sandbox: Sandbox, sql: str, staged: Path, fmt: str) -> int:
    """Write the result to `staged` inside the private outbox (stdout fallback of `--query`)."""
    if sandbox.outbox not in staged.parents:
        raise ValueError(f"{staged} is not in the sandbox's outbox")
    return _copy_out(sandbox, sql, staged, fmt)


def _copy_out(sandbox: Sandbox, sql: str, target: Path, fmt: str) -> int:
    if fmt not in FORMATS:
        raise RefusedStatement(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    statements = check_read_only(sql, sandbox.export_dir)
    last = statements[-1]
    if last.kind not in READ_TYPES:
        raise RefusedStatement("only the result of a SELECT can be exported; end with a SELECT")
    cur = sandbox.cursor()
    try:
        for st in statements[:-1]:
            cur.execute(st.sql).fetchall()
        copy = f"COPY ({last.sql}) TO {sql_literal(target)} ({FORMATS[fmt]})"
        row = cur.execute(copy).fetchone()
    finally:
        cur.close()
    return int(row[0]) if row else 0
