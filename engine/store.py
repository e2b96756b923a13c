"""Run directory storage: immutable per-question parts and the consolidated run database.

A question's rows land together or not at all: they are written as Parquet files into a
temporary directory that is renamed into `parts/` when complete (rename is atomic). Nothing a
crash leaves behind can be mistaken for a finished question, and a four-hour run loses at most
the question in flight. `merge` consolidates parts into `run.duckdb` under a temporary name.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from engine import schema
from engine.schema import PARTS_DIR, RUN_DB_NAME, RUN_TABLES_DIR, Table


class RunDirError(Exception):
    """The output directory cannot be used as asked (the message says what to do)."""


def part_name(idx: int, question_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", question_id)[:80]
    return f"{idx:07d}-{safe}"


def _typed_table(con: duckdb.DuckDBPyConnection, t: Table, rows: pa.Table | None) -> None:
    con.execute(t.ddl())
    if rows is not None and rows.num_rows:
        cols = ", ".join(f'"{c}"' for c in rows.column_names)
        con.register("_rows", rows)
        con.execute(f"INSERT INTO {t.name} ({cols}) SELECT {cols} FROM _rows")
        con.unregister("_rows")


def write_tables(dest: Path, tables: tuple[Table, ...], data: Mapping[str, pa.Table]) -> None:
    """Write each table as Parquet with exactly the schema's column types, atomically."""
    tmp = dest.parent / f".tmp-{dest.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        con = duckdb.connect(":memory:")
        for t in tables:
            _typed_table(con, t, data.get(t.name))
            key = ", ".join(t.key)
            out = str(tmp / f"{t.name}.parquet").replace("'", "''")
            con.execute(f"COPY (SELECT * FROM {t.name} ORDER BY {key}) TO '{out}' "
                        "(FORMAT parquet, COMPRESSION zstd)")
        con.close()
        if dest.exists():  # replacing a failed question's part: move the old one aside first
            trash = dest.parent / f".old-{dest.name}-{uuid.uuid4().hex[:8]}"
            dest.rename(trash)
            tmp.rename(dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_part(run_dir: Path, idx: int, question_id: str, data: Mapping[str, pa.Table]) -> Path:
    dest = run_dir / PARTS_DIR / part_name(idx, question_id)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_tables(dest, schema.QUESTION_TABLES, data)
    return dest


def finished_parts(run_dir: Path) -> dict[str, str]:
    """question_id -> status of every part already written."""
    parts = run_dir / PARTS_DIR
    files = sorted(parts.glob("*/questions.parquet")) if parts.exists() else []
    if not files:
        return {}
    con = duckdb.connect(":memory:")
    rows = con.execute("SELECT question_id, status FROM read_parquet(?)",
                       [[str(f) for f in files]]).fetchall()
    return dict(rows)


def write_run_tables(run_dir: Path, data: Mapping[str, pa.Table]) -> None:
    dest = run_dir / RUN_TABLES_DIR
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_tables(dest, schema.RUN_TABLES, data)


def read_run_meta(run_dir: Path) -> dict[str, str]:
    f = run_dir / RUN_TABLES_DIR / "meta.parquet"
    if not f.exists():
        return {}
    con = duckdb.connect(":memory:")
    return dict(con.execute("SELECT key, value FROM read_parquet(?)", [str(f)]).fetchall())


def prepare_run_dir(run_dir: Path, fingerprint: str, *, fresh: bool) -> None:
    """Create the run directory, or check it belongs to the same config (resume)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"output {run_dir} is a file; choose a directory in output_dir")
    meta = read_run_meta(run_dir) if run_dir.exists() else {}
    has_parts = (run_dir / PARTS_DIR).exists() and any((run_dir / PARTS_DIR).iterdir())
    if fresh:
        for name in (PARTS_DIR, RUN_TABLES_DIR):
            shutil.rmtree(run_dir / name, ignore_errors=True)
        (run_dir / RUN_DB_NAME).unlink(missing_ok=True)
    elif meta and meta.get("config_hash") != fingerprint:
        raise RunDirError(
            f"{run_dir} holds a run of a different config (hash {meta.get('config_hash')}, this "
            f"config {fingerprint}); pass --fresh to discard it or set another output_dir")
    elif not meta and has_parts:
        raise RunDirError(f"{run_dir} has parts but no run metadata; pass --fresh to discard them")
    run_dir.mkdir(parents=True, exist_ok=True)


def meta_table(items: Mapping[str, Any]) -> pa.Table:
    keys = list(items)
    vals = [v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
            for v in items.values()]
    return pa.table({"key": keys, "value": vals})


def merge(run_dir: Path, *, extra_meta: Mapping[str, Any] | None = None,
          draws: int = 200, seed: int = 0) -> Path:
    """Consolidate parts into run.duckdb (temp name, then rename) with views and summaries."""
    from engine.summaries import materialise_summaries

    run_dir = Path(run_dir)
    if not (run_dir / RUN_TABLES_DIR / "meta.parquet").exists():
        raise RunDirError(f"{run_dir} is not a run directory (no {RUN_TABLES_DIR}/meta.parquet)")
    t0 = time.perf_counter()
    final = run_dir / RUN_DB_NAME
    tmp = run_dir / f".{RUN_DB_NAME}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        con = duckdb.connect(str(tmp))
        for t in schema.RUN_TABLES:
            con.execute(t.ddl())
            f = str(run_dir / RUN_TABLES_DIR / f"{t.name}.parquet")
            con.execute(f"INSERT INTO {t.name} SELECT {', '.join(t.column_names)} "
                        "FROM read_parquet(?)", [f])
        parts = sorted(str(p) for p in (run_dir / PARTS_DIR).glob("*"))
        for t in schema.QUESTION_TABLES:
            con.execute(t.ddl())
            files = [f"{p}/{t.name}.parquet" for p in parts if not Path(p).name.startswith(".")]
            if files:
                con.execute(
                    f"INSERT INTO {t.name} SELECT {', '.join(t.column_names)} FROM "
                    f"read_parquet(?, union_by_name = true) ORDER BY {', '.join(t.key)}", [files])
        materialise_summaries(con, draws=draws, seed=seed)
        schema.create_views(con)
        merged = {"merged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "merge_seconds": round(time.perf_counter() - t0, 3)}
        for k, v in {**merged, **(extra_meta or {})}.items():
            con.execute("DELETE FROM meta WHERE key = ?", [k])
            con.execute("INSERT INTO meta VALUES (?, ?)",
                        [k, v if isinstance(v, str) else json.dumps(v, default=str)])
        con.execute("CHECKPOINT")
        con.close()
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    return final
