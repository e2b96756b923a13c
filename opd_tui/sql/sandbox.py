"""The hardened connection behind the console and `--query`: read-only, fenced, private, locked.

DuckDB enforces the fence itself. The sandbox is its own database instance (a consolidated file
is ATTACHed read-only into a fresh in-memory instance), so its locked settings never leak into,
or collide with, another connection to the same file. External access is off except for the live
run's own Parquet files (to read) and, in the console, the export directory (to write);
extensions are neither installed nor loaded on demand; spills go to a private temporary directory
with a size cap instead of beside the user's data; and the configuration is locked so a user's
`SET` cannot undo any of it. What DuckDB's fence cannot express (a live run's files are readable
*and* writable to it; temp tables and macros need no file) is refused by the statement check in
`statements.py` before anything runs.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from engine.runfile.schema import (
    PARTS_DIR,
    RUN_CATALOG,
    RUN_TABLES_DIR,
    SchemaError,
    check_schema,
    is_live_run_dir,
    open_run,
)
from opd_tui.sql.statements import within

EXPORT_DIR_DEFAULT = "opd-exports"
"""The console's export directory, relative to the current directory; created on first export."""

SPILL_LIMIT_ENV = "OPD_TUI_SPILL_LIMIT"
SPILL_LIMIT_DEFAULT = "4GiB"
"""Cap on the temporary disk a query may spill to (DuckDB's own default is 90% of free disk)."""


OUTBOX, SPILL = "out", "spill"
"""Subdirectories of a sandbox's private scratch directory: finished results, DuckDB's spill."""


class SandboxError(Exception):
    """The run cannot be opened for SQL, or a setting is unusable; the message says what to do."""


@dataclass
class Sandbox:
    """A locked connection plus the paths it may touch; cursors are made per query.

    `export_dir` is where the user's own `COPY ... TO` may write (None: nowhere, as in `--query`,
    whose only output is the one `--output` file). `scratch` is a private directory the sandbox
    owns: DuckDB spills there and may write finished exports there before they are moved into
    place. It is deleted on `close()`.
    """

    con: duckdb.DuckDBPyConnection
    source: Path
    export_dir: Path | None
    scratch: Path
    spill_limit: str
    readable: list[str] = field(default_factory=list)
    attached: bool = False
    _cursors: weakref.WeakSet[duckdb.DuckDBPyConnection] = field(
        default_factory=weakref.WeakSet, repr=False)

    @property
    def outbox(self) -> Path:
        """The one directory inside `scratch` DuckDB may write finished results to."""
        return self.scratch / OUTBOX

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh connection to the same database: an open streaming result blocks its cursor."""
        cur = self.con.cursor()
        self._cursors.add(cur)
        if self.attached:  # USE is per connection: each cursor starts in the in-memory catalog
            cur.execute(f"USE {RUN_CATALOG}")
        return cur

    def ensure_export_dir(self) -> Path:
        """Create the export directory on first use, so merely opening the TUI writes nothing."""
        if self.export_dir is None:
            raise SandboxError("this session has no export directory")
        self.export_dir.mkdir(parents=True, exist_ok=True)
        return self.export_dir

    def interrupt(self) -> None:
        """Stop whatever runs on any cursor of this sandbox (Ctrl-C); safe from any thread."""
        for cur in list(self._cursors):
            with contextlib.suppress(duckdb.Error):
                cur.interrupt()

    def close(self) -> None:
        try:
            with contextlib.suppress(duckdb.Error):  # a worker still unwinding: the GC closes it
                self.con.close()
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)


def _run_files(path: Path) -> list[str]:
    """Files a live run directory's views read (its Parquet parts and run tables)."""
    if not is_live_run_dir(path):
        return []
    pattern_parts = str(path / PARTS_DIR / "*" / "*.parquet")
    pattern_run = str(path / RUN_TABLES_DIR / "*.parquet")
    return sorted(glob.glob(pattern_parts) + glob.glob(pattern_run))


def _overlaps(a: Path, b: Path) -> bool:
    """Whether one of two paths lies inside (or is) the other."""
    return within(a, b) or within(b, a)


def default_export_dir() -> Path:
    return Path.cwd() / EXPORT_DIR_DEFAULT


def spill_limit() -> str:
    """The spill cap: `OPD_TUI_SPILL_LIMIT` (a DuckDB size such as 20GiB) or the default."""
    return os.environ.get(SPILL_LIMIT_ENV, "").strip() or SPILL_LIMIT_DEFAULT


def open_sandbox(
    path: str | os.PathLike[str],
    export_dir: str | os.PathLike[str] | None = None,
    *,
    exports: bool = True,
    memory_limit: str | None = None,
    schema_check: bool = True,
) -> Sandbox:
    """Open a run for SQL. Raises SandboxError (bad setting), SchemaError or duckdb.Error.

    `exports=False` gives no export directory at all (`--query`). Only the exact Parquet files of
    a live run are granted (`allowed_paths`), never its directory, and an export directory that
    overlaps the run is refused: either would let a `COPY ... TO` overwrite the user's data.
    """
    source = Path(path)
    target: Path | None = None
    if exports:
        target = Path(export_dir).expanduser() if export_dir is not None else default_export_dir()
        target = target.resolve()
        if _overlaps(target, source.resolve()):
            raise SandboxError(
                f"the export directory {target} overlaps the run {source}: exports must never "
                "land among the run's files. Choose another directory (OPD_TUI_EXPORT_DIR)"
            )
    scratch = Path(tempfile.mkdtemp(prefix="opd-tui-sql-"))  # mode 0700: private
    (scratch / OUTBOX).mkdir()
    (scratch / SPILL).mkdir()
    cap = spill_limit()
    config = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "temp_directory": str(scratch / SPILL),
    }
    try:
        con = duckdb.connect(":memory:", config=config)
    except duckdb.Error:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    try:
        try:
            con.execute("SET max_temp_directory_size = ?", [cap])
        except duckdb.Error as e:
            raise SandboxError(
                f"{SPILL_LIMIT_ENV}={cap!r} is not a size DuckDB understands ({first_line(e)}); "
                "use a value such as 8GiB or 500MB"
            ) from None
        if memory_limit is not None:
            con.execute("SET memory_limit = ?", [memory_limit])
        open_run(source, into=con)
        attached = not is_live_run_dir(source)  # open_run refused a path that is neither
        if schema_check:
            check_schema(con, summaries=attached)
        readable = _run_files(source)
        writable = [str(scratch / OUTBOX) + os.sep]
        if target is not None:
            writable.append(str(target) + os.sep)
        con.execute("SET allowed_directories = ?", [writable])
        if readable:
            con.execute("SET allowed_paths = ?", [readable])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return Sandbox(con=con, source=source, export_dir=target, scratch=scratch, spill_limit=cap,
                   readable=readable, attached=attached)


def describe_error(e: BaseException, sandbox: Sandbox | None = None) -> str:
    """One readable message for a failed query; a full spill cap says which knob to turn."""
    text = str(e).strip()
    if "max_temp_directory_size" in text:
        cap = sandbox.spill_limit if sandbox is not None else spill_limit()
        return (
            f"the query needs more temporary disk than the spill cap of {cap}; narrow it "
            f"(filter, fewer columns, LIMIT) or raise the cap, e.g. {SPILL_LIMIT_ENV}=20GiB"
        )
    if isinstance(e, duckdb.PermissionException):
        first, _, rest = text.partition("\n")
        note = " (SQL here reads only the run's own files and writes only exports)"
        return first + note + ("\n" + rest if rest else "")
    return text


def first_line(e: BaseException | str) -> str:
    """The first line of an error's message (DuckDB adds LINE/caret lines below it)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


__all__ = [
    "Sandbox", "SandboxError", "SchemaError", "describe_error", "first_line", "open_sandbox",
    "spill_limit",
]
