"""Non-interactive console: `opd-tui FILE --query SQL --format csv|json|parquet [--output PATH]`.

Same sandbox, statement check and DuckDB writers as the console's export. For stdout the result
is written by DuckDB into a private temporary directory (the only place the fence lets it write)
and copied out in chunks, so stdout and `--output` carry byte-identical files.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, TextIO

import duckdb

from engine.schema import SchemaError
from opd_tui.sql.export import FORMATS, SUFFIXES, export_query
from opd_tui.sql.sandbox import open_sandbox
from opd_tui.sql.statements import RefusedStatement


def run_query_cli(
    path: str | Path,
    sql: str,
    fmt: str,
    output: str | Path | None,
    *,
    stdout: BinaryIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run `sql` on the run at `path` and write the result; return a process exit code.

    0 on success, 2 for a usage mistake (bad format, parquet to stdout, missing file), 1 when the
    query fails or is refused. Messages go to stderr as one line, never a traceback.
    """
    err = stderr or sys.stderr
    out = stdout or sys.stdout.buffer
    if fmt not in FORMATS:
        print(f"opd-tui: unknown --format '{fmt}'; use one of: {', '.join(FORMATS)}", file=err)
        return 2
    if output is None and fmt == "parquet":
        print("opd-tui: parquet is binary; give --output PATH to write it to a file", file=err)
        return 2
    if not Path(path).exists():
        print(f"opd-tui: no run database or run directory at {path}", file=err)
        return 2
    try:
        if output is not None:
            target = Path(output).expanduser().resolve()
            if target.is_dir():
                print(f"opd-tui: --output {output} is a directory; name a file", file=err)
                return 2
            rows = _export(path, sql, fmt, target)
            print(f"opd-tui: wrote {rows:,} rows to {target}", file=err)
            return 0
        with tempfile.TemporaryDirectory(prefix="opd-tui-") as tmp:
            target = Path(tmp) / f"result{SUFFIXES[fmt]}"
            _export(path, sql, fmt, target)
            with target.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
            out.flush()
        return 0
    except RefusedStatement as e:
        print(f"opd-tui: refused: {e}", file=err)
    except (duckdb.Error, SchemaError, OSError) as e:
        print(f"opd-tui: query failed: {str(e).strip()}", file=err)
    return 1


def _export(path: str | Path, sql: str, fmt: str, target: Path) -> int:
    sandbox = open_sandbox(path, export_dir=target.parent)
    try:
        return export_query(sandbox, sql, target, fmt)
    finally:
        sandbox.close()
