"""The hardened connection behind the console: read-only, file access fenced off, config locked.

DuckDB enforces the fence itself: external access is turned off except for the run's own files and
the export directory, extensions are neither installed nor loaded on demand, and the configuration
is locked so a user's `SET` cannot undo any of it. The statement filter in `statements.py` covers
what DuckDB cannot (temp tables, a live run opened as an in-memory database).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from engine.schema import PARTS_DIR, RUN_DB_NAME, RUN_TABLES_DIR, open_run


@dataclass
class Sandbox:
    """A locked connection plus the paths it may touch; cursors are made per query."""

    con: duckdb.DuckDBPyConnection
    source: Path
    export_dir: Path
    readable: list[str] = field(default_factory=list)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh connection to the same database: an open streaming result blocks its cursor."""
        return self.con.cursor()

    def close(self) -> None:
        self.con.close()


def _run_files(path: Path) -> list[str]:
    """Files a live run directory's views read (its Parquet parts and run tables)."""
    if not path.is_dir() or (path / RUN_DB_NAME).exists():
        return []
    pattern_parts = str(path / PARTS_DIR / "*" / "*.parquet")
    pattern_run = str(path / RUN_TABLES_DIR / "*.parquet")
    return sorted(glob.glob(pattern_parts) + glob.glob(pattern_run))


def open_sandbox(
    path: str | os.PathLike[str],
    export_dir: str | os.PathLike[str] | None = None,
    *,
    memory_limit: str | None = None,
) -> Sandbox:
    """Open a run for the console. The export directory is created if missing.

    Only the exact Parquet files of a live run are readable (`allowed_paths`), not the run
    directory: granting the directory would also let `COPY ... TO` overwrite the user's parts.
    """
    source = Path(path)
    exports = Path(export_dir) if export_dir is not None else Path.cwd() / "opd-exports"
    exports.mkdir(parents=True, exist_ok=True)
    exports = exports.resolve()
    con = open_run(source)
    readable = _run_files(source)
    for setting in ("autoinstall_known_extensions", "autoload_known_extensions"):
        con.execute(f"SET {setting} = false")
    if memory_limit is not None:
        con.execute("SET memory_limit = ?", [memory_limit])
    con.execute("SET allowed_directories = ?", [[str(exports) + os.sep]])
    if readable:
        con.execute("SET allowed_paths = ?", [readable])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return Sandbox(con=con, source=source, export_dir=exports, readable=readable)
