"""Export a query's full result through DuckDB's own writers (COPY), never through the grid.

COPY streams from the query to the file, so exporting 10 million rows costs no Python memory.
"""

from __future__ import annotations

import os
from pathlib import Path

from opd_tui.sql.sandbox import Sandbox
from opd_tui.sql.statements import READ_TYPES, RefusedStatement, check_read_only

FORMATS: dict[str, str] = {
    "csv": "FORMAT csv, HEADER true",
    "parquet": "FORMAT parquet",
    "json": "FORMAT json",  # newline-delimited JSON (JSON lines)
}
SUFFIXES = {"csv": ".csv", "parquet": ".parquet", "json": ".jsonl"}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def export_query(sandbox: Sandbox, sql: str, path: str | os.PathLike[str], fmt: str) -> int:
    """Write the result of `sql` (its last statement must read) to `path`; return rows written.

    `path` must lie inside the sandbox's export directory; DuckDB's fence refuses anything else.
    """
    if fmt not in FORMATS:
        raise RefusedStatement(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    statements = check_read_only(sql, sandbox.export_dir)
    last = statements[-1]
    if last.kind not in READ_TYPES:
        raise RefusedStatement("only the result of a SELECT can be exported; end with a SELECT")
    target = Path(path)
    if not target.is_absolute():
        target = sandbox.export_dir / target
    cur = sandbox.cursor()
    try:
        for st in statements[:-1]:
            cur.execute(st.sql).fetchall()
        copy = f"COPY ({last.sql}) TO {_literal(str(target))} ({FORMATS[fmt]})"
        row = cur.execute(copy).fetchone()
    finally:
        cur.close()
    return int(row[0]) if row else 0
