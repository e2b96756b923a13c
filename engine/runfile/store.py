"""Run directory storage: immutable per-question parts and the consolidated run database.

A question's rows land together or not at all: they are written as Parquet files into a
temporary directory that is renamed into `parts/` when complete (rename is atomic). Nothing a
crash leaves behind can be mistaken for a finished question, and a four-hour run loses at most
the question in flight. `merge` consolidates parts into `run.duckdb` under a temporary name.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from engine.runfile import schema
from engine.runfile.schema import PARTS_DIR, RUN_DB_NAME, RUN_TABLES_DIR, Table
from engine.runfile.sql import sql_ident, sql_literal

FAILPOINT_ENV = "OPD_FAILPOINT"
_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Test hook for the crash campaign (tests/test_kill.py): SIGKILL this process at the
    named moment when OPD_FAILPOINT is `name` or `name@k` (the k-th time it is reached)."""
    want = os.environ.get(FAILPOINT_ENV)
    if not want:
        return
    target, _, nth = want.partition("@")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), 9)


class RunDirError(Exception):
    """The output directory cannot be used as asked (the message says what to do)."""


def part_name(idx: int, question_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", question_id)[:80]
    return f"{idx:07d}-{safe}"


def _typed_table(con: duckdb.DuckDBPyConnection, t: Table, rows: pa.Table | None) -> None:
    con.execute(t.ddl())
    if rows is not None and rows.num_rows:
        cols = ", ".join(sql_ident(c) for c in rows.column_names)
        con.register("_rows", rows)
        con.execute(f"INSERT INTO {t.name} ({cols}) SELECT {cols} FROM _rows")
        con.unregister("_rows")


_critical = 0
_pending: list[int] = []


def on_stop_signal(signum: int, frame: object) -> None:
    """SIGINT / SIGTERM handler for a run: a KeyboardInterrupt now, or, while a file is being
    written, right after it is complete (DuckDB would turn it into "Query interrupted" and the
    write would fail half-way)."""
    if _critical:
        _pending.append(signum)
        return
    raise KeyboardInterrupt


@contextmanager
def signals_deferred() -> Iterator[None]:
    """A critical section for `on_stop_signal`."""
    global _critical
    _critical += 1
    try:
        yield
    finally:
        _critical -= 1
        if not _critical and _pending:
            _pending.clear()
            raise KeyboardInterrupt


def write_tables(dest: Path, tables: tuple[Table, ...], data: Mapping[str, pa.Table]) -> None:
    """Write each table as Parquet with exactly the schema's column types, atomically."""
    with signals_deferred():
        _write_tables(dest, tables, data)


def _write_tables(dest: Path, tables: tuple[Table, ...], data: Mapping[str, pa.Table]) -> None:
    tmp = dest.parent / f".tmp-{dest.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        con = duckdb.connect(":memory:")
        for t in tables:
            _typed_table(con, t, data.get(t.name))
            key = ", ".join(t.key)
            out = sql_literal(tmp / f"{t.name}.parquet")
            con.execute(f"COPY (SELECT * FROM {t.name} ORDER BY {key}) TO {out} "
                        "(FORMAT parquet, COMPRESSION zstd)")
        con.close()
        failpoint("write:before-rename")
        if dest.exists():  # replacing (a failed part, the run tables): old one aside first
            trash = dest.parent / f".old-{dest.name}-{uuid.uuid4().hex[:8]}"
            dest.rename(trash)
            failpoint("write:between-renames")
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


LOCK_NAME = ".lock"
DISCARDED_PREFIX = ".discarded-"
_OLD = re.compile(r"^\.old-(.+)-[0-9a-f]{8}$")


def _finished_count(run_dir: Path) -> int:
    parts = run_dir / PARTS_DIR
    return sum(1 for p in parts.glob("*/questions.parquet") if not p.parent.name.startswith(".")
               ) if parts.is_dir() else 0


def check_run_dir(run_dir: Path, fingerprint: str, *, fresh: bool) -> None:
    """Read-only: may a run of this config use the directory? Raises RunDirError saying why not.

    Called before any model loads (and again under the lock). A directory whose metadata is of
    another config but which holds no finished question is simply taken over: nothing is lost.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"output {run_dir} is a file; choose a directory in output_dir")
    for parent in [run_dir, *run_dir.parents]:
        if parent.exists():
            if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                raise RunDirError(f"cannot create or write the output directory {run_dir}: "
                                  f"{parent} is not a writable directory; set another "
                                  "output_dir (or --out)")
            break
    if fresh or not run_dir.exists():
        return
    meta = read_run_meta(run_dir)
    done = _finished_count(run_dir)
    if meta and meta.get("config_hash") != fingerprint and done:
        raise RunDirError(
            f"{run_dir} holds {done} finished question(s) of a different config (hash "
            f"{meta.get('config_hash')}, this config {fingerprint}); set another output_dir "
            "(or --out), or pass --fresh to start over, which deletes those results")
    if not meta and done and not any(run_dir.glob(DISCARDED_PREFIX + "*")) \
            and not any(run_dir.glob(".old-run-*")):
        raise RunDirError(
            f"{run_dir} has {done} finished question part(s) but no run metadata "
            f"({RUN_TABLES_DIR}/meta.parquet), so it can be neither resumed nor merged. Set "
            "another output_dir, or pass --fresh to start over, which deletes those parts")


@contextmanager
def run_lock(run_dir: Path, command: str) -> Iterator[None]:
    """Exclusive use of a run directory by one process (flock: released if the process dies).

    A second process is refused with who holds the lock; the holder's temp files are then known
    to be its own, so everything else that looks temporary belongs to a dead process.
    """
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        f = (run_dir / LOCK_NAME).open("a+")
    except OSError as e:
        raise RunDirError(f"cannot create the output directory {run_dir}: {e.strerror}; set "
                          "another output_dir (or --out)") from None
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown process"
            raise RunDirError(f"{run_dir} is in use by another opd-engine process ({holder}); "
                              "wait for it to finish or stop it, or use another output_dir"
                              ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {command}\n")
        f.flush()
        yield
    finally:
        f.close()  # closing the descriptor releases the lock


def recover_run_dir(run_dir: Path) -> list[str]:
    """Undo what a killed process left half-done; call with the lock held. Returns what it did.

    Every rename sequence is dest -> .old-*, tmp -> dest: a kill between the two leaves no dest
    and a complete .old-* (restored here). `.tmp-*` directories and `.run.duckdb.*.tmp` files
    are unfinished writes of dead processes (removed). A `--fresh` start moves the previous run
    into `.discarded-*` until the new run's tables are written: if they were not, it is put back.
    """
    run_dir = Path(run_dir)
    did: list[str] = []
    for base in (run_dir, run_dir / PARTS_DIR):
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir()):
            m = _OLD.match(entry.name)
            if m and not (base / m.group(1)).exists():
                entry.rename(base / m.group(1))
                did.append(f"restored {base.name}/{m.group(1)} from an interrupted rewrite")
            elif m:
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(".tmp-"):
                shutil.rmtree(entry, ignore_errors=True)
                did.append(f"removed an unfinished write ({entry.name})")
    for tmp in run_dir.glob(f".{RUN_DB_NAME}.*.tmp*"):
        tmp.unlink(missing_ok=True)
        did.append(f"removed an unfinished merge ({tmp.name})")
    for trash in sorted(run_dir.glob(DISCARDED_PREFIX + "*")):
        if (run_dir / RUN_TABLES_DIR / "meta.parquet").exists():
            shutil.rmtree(trash, ignore_errors=True)
            did.append(f"removed the run discarded by --fresh ({trash.name})")
            continue
        for item in trash.iterdir():
            if not (run_dir / item.name).exists():
                item.rename(run_dir / item.name)
        shutil.rmtree(trash, ignore_errors=True)
        did.append("restored the previous run: a --fresh start was interrupted before it began")
    return did


def discard_previous(run_dir: Path) -> Path | None:
    """Move a previous run aside (for --fresh); `forget_discarded` deletes it once the new run
    has started, `recover_run_dir` restores it if the new one never did."""
    items = [run_dir / n for n in (PARTS_DIR, RUN_TABLES_DIR, RUN_DB_NAME)
             if (run_dir / n).exists()]
    if not items:
        return None
    trash = run_dir / f"{DISCARDED_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    trash.mkdir()
    for item in items:
        item.rename(trash / item.name)
        failpoint("fresh:moving-aside")
    return trash


def forget_discarded(trash: Path | None) -> None:
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def meta_table(items: Mapping[str, Any]) -> pa.Table:
    keys = list(items)
    vals = [v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
            for v in items.values()]
    return pa.table({"key": keys, "value": vals})


def merge(run_dir: Path, *, extra_meta: Mapping[str, Any] | None = None,
          draws: int = 200, seed: int = 0) -> Path:
    """Consolidate parts into run.duckdb (temp name, then rename) with views and summaries."""
    with signals_deferred():
        return _merge(run_dir, extra_meta=extra_meta, draws=draws, seed=seed)


def _merge(run_dir: Path, *, extra_meta: Mapping[str, Any] | None, draws: int, seed: int
           ) -> Path:
    from engine.runfile.summaries import materialise_summaries

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
            files = [f for f in files if Path(f).exists()]  # parts of an older engine: fewer
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
        failpoint("merge:before-replace")
        tmp.replace(final)
        failpoint("merge:after-replace")
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    return final
