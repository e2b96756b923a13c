"""Non-interactive console: `opd-tui FILE --query SQL --format csv|json|parquet [--output PATH]`.

Same sandbox and statement check as the console. `--output` goes through DuckDB's own writers
(COPY). stdout is streamed: CSV and JSON lines are written batch by batch from the query's Arrow
reader, so the first rows appear while DuckDB is still producing the rest and memory stays flat
however big the result. Columns the streaming CSV writer cannot format (lists, structs, maps) fall
back to DuckDB writing a private temporary file that is then copied out.
"""

from __future__ import annotations

import contextlib
import csv
import decimal
import io
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import duckdb
import pyarrow as pa

from engine.runfile.schema import SchemaError
from opd_tui.sql.export import FORMATS, SUFFIXES, export_query_staged, export_to_file
from opd_tui.sql.sandbox import (
    Sandbox,
    SandboxError,
    describe_error,
    first_line,
    open_sandbox,
)
from opd_tui.sql.statements import RefusedStatement, error_position, within
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

    0 on success (also when the reader of stdout closes it early, as `| head` does), 2 for a
    usage mistake (bad format, parquet to stdout, missing file, unusable --output), 1 when the
    query fails or is refused, 130 on Ctrl-C. Messages go to stderr as one line, never a
    traceback.
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
    target = Path(output).expanduser().absolute() if output is not None else None
    if target is not None and (problem := _output_problem(target, Path(path))):
        print(f"opd-tui: --output {output}: {problem}", file=err)
        return 2
    try:
        sandbox = open_sandbox(path, exports=False, memory_limit=MEMORY_LIMIT)
    except (SandboxError, SchemaError) as e:
        print(f"opd-tui: {path}: {e}", file=err)
        return 2
    except duckdb.Error as e:
        print(f"opd-tui: {path}: cannot be opened as a run database: {first_line(e)}", file=err)
        return 2

    def write() -> None:
        if target is not None:
            rows = export_to_file(sandbox, sql, target, fmt)
            print(f"opd-tui: wrote {rows:,} rows to {target}", file=err)
            return
        if not _stream(sandbox, sql, fmt, out):
            staged = sandbox.outbox / f"result{SUFFIXES[fmt]}"
            export_query_staged(sandbox, sql, staged, fmt)
            with staged.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
        out.flush()

    try:
        _interruptible(write, sandbox)
        return 0
    except BrokenPipeError:
        _silence_stdout()
        return 0  # the reader had enough (`| head`): not an error, and nothing to say
    except KeyboardInterrupt:
        where = f"; {target} was not written" if target is not None else ""
        print(f"opd-tui: interrupted{where}", file=err)
        return 130
    except RefusedStatement as e:
        print(f"opd-tui: refused: {e}", file=err)
    except (duckdb.Error, OSError) as e:
        print(f"opd-tui: query failed{_where(e, sql)}: {first_line(describe_error(e, sandbox))}",
              file=err)
    finally:
        sandbox.close()
    return 1


def _interruptible(job: Callable[[], None], sandbox: Sandbox) -> None:
    """Run `job` in a worker so Ctrl-C reaches Python while DuckDB computes, then stop DuckDB.

    A signal handler only runs between bytecodes of the main thread, never while it waits inside
    a DuckDB call, so the main thread waits here instead and interrupts the sandbox's cursors.
    """
    failure: list[BaseException] = []
    done = threading.Event()  # not Thread.join: a join cut by Ctrl-C can report a live thread dead

    def target() -> None:
        try:
            job()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, raised there
            failure.append(e)
        finally:
            done.set()

    threading.Thread(target=target, name="opd-tui-query", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        sandbox.interrupt()
        done.wait(30)
        raise
    if failure:
        raise failure[0]


def _output_problem(target: Path, source: Path) -> str | None:
    """Why `target` cannot be the --output file, or None."""
    if target.is_dir():
        return "is a directory; name a file"
    existing = next(p for p in target.parents if p.exists())  # missing ones are made at the end
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"the directory {existing} is not writable"
    if within(target, source):
        return "lies inside the run being read; write the result somewhere else"
    return None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not complain again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _where(e: BaseException, sql: str) -> str:
    """' at line L, column C' of the user's SQL when DuckDB marks a position, else ''."""
    pos = error_position(str(e), sql)
    return f" at line {pos.line}, column {pos.column}" if pos is not None else ""


def _csv_writable(schema: pa.Schema) -> bool:
    return not any(pa.types.is_nested(f.type) for f in schema)


def _stream(sandbox: Sandbox, sql: str, fmt: str, out: BinaryIO) -> bool:
    """Write the result of `sql` to `out` batch by batch; False if it must go through COPY."""
    import pyarrow.csv as pacsv

    stream = start_query(sandbox, sql, row_limit=sys.maxsize)  # checks every statement
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
