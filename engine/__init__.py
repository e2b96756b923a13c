"""OPD diagnostic engine: per-token alignment of distillation signals with the ideal direction.

From Python, `open_run` is the entry point: it reads a run without the engine's models or torch
(`import engine` loads nothing heavy; the CLI is `engine.cli`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

__version__ = "0.1.0"
__all__ = ["open_run"]


def open_run(path: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """Open a run read-only and return a DuckDB connection with its tables and views.

    `path` is a run file (`run.duckdb`, `sample_data/demo.duckdb`) or a run directory; a directory
    still being written is read through its Parquet parts (summary tables are then empty until
    `opd-engine merge`). The schema is checked first, so a file from another engine version fails
    here with one clear message (`engine.runfile.schema.SchemaError`) instead of at some later
    query. Nothing is ever written. Tables and columns: docs/schema.md.

    Query results convert to Polars with `.pl()` (through Arrow: needs pyarrow, a dependency)::

        import polars as pl

        import engine

        con = engine.open_run("sample_data/demo.duckdb")
        scores = con.sql("SELECT teacher, signal, edge FROM scores").pl()  # a polars.DataFrame
        scores.group_by("teacher", "signal").agg(pl.col("edge").mean()).sort("edge")

    Torch-free: it imports `engine.runfile` only, so a notebook without a GPU stack can use it.
    """
    from pathlib import Path

    from engine.runfile.schema import check_schema, is_live_run_dir
    from engine.runfile.schema import open_run as _open

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no run file or run directory there")
    con = _open(p)
    try:
        check_schema(con, summaries=not is_live_run_dir(p))
    except BaseException:
        con.close()
        raise
    return con
