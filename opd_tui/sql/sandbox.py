"""The hardened connection behind the console: read-only, file access fenced off, config locked.

DuckDB enforces the fence itself: external access is turned off except for the run's own files and
the export directory, extensions are neither installed nor loaded on demand, and the configuration
is locked so a user's `SET` cannot undo any of it. The statement filter in `statements.py` covers
what DuckDB cannot (temp tables, a live run opened as an in-memory database, writes to the readable
part files).

Every sandbox is a database instance of its own. Connecting to a `.duckdb` file that the TUI has
open already would hand back the TUI's cached instance, whose settings are shared: the sandbox's
lock would lock the TUI's connection too, and the next sandbox could not apply its settings ("the
configuration has been locked"). So a file is attached read-only to a fresh in-memory instance.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from engine.schema import PARTS_DIR, RUN_DB_NAME, RUN_TABLES_DIR, open_run

MAX_TEMP_SIZE_ENV = "OPD_TUI_MAX_TEMP_SIZE"
DEFAULT_MAX_TEMP_SIZE = "4GiB"
"""Cap on the spill files of one sandbox (DuckDB's own default is 90% of the free disk)."""

_RESERVED_CATALOGS = frozenset({"memory", "system", "temp", "main"})


@dataclass(eq=False)
class Sandbox:
    """A locked connection plus the paths it may touch; cursors are made per query."""

    con: duckdb.DuckDBPyConnection
    source: Path
    export_dir: Path
    """Where exports go; created on the first export, not on open."""
    readable: list[str] = field(default_factory=list)
    temp_dir: Path | None = None
    """Private directory of this sandbox (DuckDB's spill files); removed on close."""
    catalog: str | None = None
    """The attached run database each cursor starts in (None: the in-memory views of a live run)."""
    user_copy: bool = True
    """Whether the user's own `COPY ... TO` may write into `export_dir`."""
    live: bool = False
    """A run directory still being written (no summaries yet)."""
    _cleanup: weakref.finalize | None = field(default=None, repr=False)

    @property
    def copy_dir(self) -> Path | None:
        """Where the user's `COPY ... TO` may write: `export_dir`, or None when it may not."""
        return self.export_dir if self.user_copy else None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh connection to the same database: an open streaming result blocks its cursor."""
        cur = self.con.cursor()
        if self.catalog is not None:
            cur.execute(f"USE {_ident(self.catalog)}")  # USE is per connection
        return cur

    def ensure_export_dir(self) -> Path:
        """Create the export directory (on the first export only, so opening leaves no trace)."""
        self.export_dir.mkdir(parents=True, exist_ok=True)
        return self.export_dir

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            if self._cleanup is not None:
                self._cleanup()


def _run_files(path: Path) -> list[str]:
    """Files a live run directory's views read (its Parquet parts and run tables)."""
    if not path.is_dir() or (path / RUN_DB_NAME).exists():
        return []
    pattern_parts = str(path / PARTS_DIR / "*" / "*.parquet")
    pattern_run = str(path / RUN_TABLES_DIR / "*.parquet")
    return sorted(glob.glob(pattern_parts) + glob.glob(pattern_run))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _database_file(source: Path) -> Path | None:
    """The `.duckdb` file behind `source`, or None for a live run directory."""
    if source.is_dir() and (source / RUN_DB_NAME).exists():
        return source / RUN_DB_NAME
    return source if source.is_file() else None


def _attach(db_file: Path) -> tuple[duckdb.DuckDBPyConnection, str]:
    """A fresh in-memory instance with `db_file` attached read-only, named as DuckDB would."""
    catalog = db_file.stem if db_file.stem.lower() not in _RESERVED_CATALOGS else "run"
    con = duckdb.connect(":memory:")
    try:
        for setting in ("autoinstall_known_extensions", "autoload_known_extensions"):
            con.execute(f"SET {setting} = false")  # before ATTACH: it may not fetch a reader
        con.execute(f"ATTACH {_literal(str(db_file))} AS {_ident(catalog)} (READ_ONLY)")
    except BaseException:
        con.close()
        raise
    return con, catalog


def open_sandbox(
    path: str | os.PathLike[str],
    export_dir: str | os.PathLike[str] | None = None,
    *,
    memory_limit: str | None = None,
    max_temp_size: str | None = None,
    private_exports: bool = False,
) -> Sandbox:
    """Open a run for the console.

    `export_dir` (default `./opd-exports`) is where exports and the user's `COPY ... TO` go; it is
    only created by the first export. With `private_exports` the user's SQL may not write at all
    and exports go to a private directory inside the sandbox's temp dir, for a caller (the batch
    CLI) that moves the one result file out itself before closing.

    Only the exact Parquet files of a live run are readable (`allowed_paths`), not the run
    directory: granting the directory would also let `COPY ... TO` overwrite the user's parts.

    DuckDB spills big sorts and joins into a private temp directory (never beside the user's run
    file), removed on close and capped at `max_temp_size`, else the `OPD_TUI_MAX_TEMP_SIZE`
    environment variable, else 4GiB (DuckDB's size syntax: '500MB', '20GiB'); a query that needs
    more fails with DuckDB's out-of-space error instead of filling the disk.
    """
    source = Path(path)
    temp_dir = Path(tempfile.mkdtemp(prefix="opd-tui-sql-"))
    try:
        if private_exports:
            exports = temp_dir / "export"
        elif export_dir is not None:
            exports = Path(export_dir).expanduser()
        else:
            exports = Path.cwd() / "opd-exports"
        exports = exports.resolve()
        db_file = _database_file(source)
        catalog: str | None = None
        if db_file is not None:
            con, catalog = _attach(db_file)
        elif source.is_dir():
            con = open_run(source)  # in-memory views over the parts: a new instance every time
        else:
            raise FileNotFoundError(f"no run database or run directory at {source}")
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    readable = _run_files(source) if db_file is None else []
    limit = max_temp_size or os.environ.get(MAX_TEMP_SIZE_ENV) or DEFAULT_MAX_TEMP_SIZE
    try:
        for setting in ("autoinstall_known_extensions", "autoload_known_extensions"):
            con.execute(f"SET {setting} = false")
        if memory_limit is not None:
            con.execute("SET memory_limit = ?", [memory_limit])
        con.execute("SET temp_directory = ?", [str(temp_dir / "spill")])
        con.execute("SET max_temp_directory_size = ?", [limit])
        # a directory that does not exist yet is fine: DuckDB only compares path prefixes
        con.execute("SET allowed_directories = ?", [[str(exports) + os.sep]])
        if readable:
            con.execute("SET allowed_paths = ?", [readable])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    sandbox = Sandbox(con=con, source=source, export_dir=exports, readable=readable,
                      temp_dir=temp_dir, catalog=catalog, user_copy=not private_exports,
                      live=db_file is None)
    # the temp dir goes with the sandbox even if close() is never called (or at exit)
    sandbox._cleanup = weakref.finalize(sandbox, shutil.rmtree, str(temp_dir), True)
    return sandbox
