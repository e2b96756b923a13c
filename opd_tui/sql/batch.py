"""Non-interactive console: `opd-tui FILE --query SQL --format csv|json|parquet [--output PATH]`.

Same sandbox and statement check as the console. `--output` goes through DuckDB's own writers
(COPY). stdout is streamed: CSV and JSON lines are written batch by batch from the query's Arrow
reader, so the first rows appear while DuckDB is still producing the rest and memory stays flat
however big the result. Columns the streaming CSV writer cannot format (lists, structs, maps) fall
back to DuckDB writing a private temporary file that is then copied out.
"""

from __future__ import annotations

import csv
import decimal
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import duckdb
import pyarrow as pa

from engine.schema import SchemaError
from opd_tui.sql.export import FORMATS, SUFFIXES, export_query
from opd_tui.sql.sandbox import open_sandbox
from opd_tui.sql.statements import READ_TYPES, RefusedStatement, check_read_only
from opd_tui.sql.stream import start_query

MEMORY_LIMIT = "512MB"
"""DuckDB's buffer pool cap for batch queries, as in the console: big sorts spill to disk."""


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
            if not _stream(path, sql, fmt, out, Path(tmp)):
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
    sandbox = open_sandbox(path, export_dir=target.parent, memory_limit=MEMORY_LIMIT)
    try:
        return export_query(sandbox, sql, target, fmt)
    finally:
        sandbox.close()


def _csv_writable(schema: pa.Schema) -> bool:
    return not any(pa.types.is_nested(f.type) for f in schema)


def _stream(path: str | Path, sql: str, fmt: str, out: BinaryIO, scratch: Path) -> bool:
    """Write the result of `sql` to `out` batch by batch; False if it must go through COPY."""
    import pyarrow.csv as pacsv

    sandbox = open_sandbox(path, export_dir=scratch, memory_limit=MEMORY_LIMIT)
    try:
        if check_read_only(sql, sandbox.export_dir)[-1].kind not in READ_TYPES:
            raise RefusedStatement("only the result of a SELECT can be written; end with a SELECT")
        stream = start_query(sandbox, sql, row_limit=sys.maxsize)
        try:
            if fmt == "csv" and not _csv_writable(stream.schema):
                return False
            if fmt == "csv":
                out.write(_csv_header(stream.schema.names))
                options = pacsv.WriteOptions(include_header=False)
                with pacsv.CSVWriter(out, stream.schema, write_options=options) as writer:
                    while (batch := stream.next_batch()) is not None:
                        writer.write_batch(batch)
                        out.flush()
            else:
                while (batch := stream.next_batch()) is not None:
                    out.write(_json_lines(batch))
                    out.flush()
        finally:
            stream.close()
    finally:
        sandbox.close()
    return True


def _csv_header(names: list[str]) -> bytes:
    """Header quoted only where needed, as DuckDB writes it (pyarrow would quote every name)."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(names)
    return text.getvalue().encode()


def _json_lines(batch: pa.RecordBatch) -> bytes:
    """One JSON object per row; decimals as numbers, dates and the like as strings."""
    return "".join(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n"
                   for row in batch.to_pylist()).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)  # a JSON number, as DuckDB's writer gives it
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
