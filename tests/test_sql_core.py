"""Query core of the SQL console: sandbox, read-only refusal, streaming, limits, cancel, export."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from engine.runfile.schema import SCHEMA_VERSION, SUMMARY_TABLES, create_tables, create_views
from opd_tui.sql import (
    RefusedStatement,
    RowWindow,
    check_read_only,
    error_position,
    export_query,
    open_sandbox,
    start_query,
)
from opd_tui.sql.statements import copy_direction_and_target


@pytest.fixture
def run_db(tmp_path: Path) -> Path:
    """A schema-valid file with a 100k-row `big` table (i, i*i) and a small tokens table."""
    path = tmp_path / "run" / "run.duckdb"
    path.parent.mkdir()
    con = duckdb.connect(str(path))
    create_tables(con)
    create_tables(con, SUMMARY_TABLES)
    create_views(con)
    con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    con.execute("CREATE TABLE big AS SELECT range AS i, range * range AS sq FROM range(100000)")
    con.execute(
        "INSERT INTO tokens SELECT 'q' || (range // 10), 0, range % 10, range, 't' || range, "
        "NULL, false, -0.5, 0.1, true FROM range(30)"
    )
    con.close()
    return path


@pytest.fixture
def sandbox(run_db: Path, tmp_path: Path):
    sb = open_sandbox(run_db, export_dir=tmp_path / "exports")
    yield sb
    sb.close()


# --- sandbox and read-only -------------------------------------------------------------------


def test_system_file_is_refused_by_duckdb(sandbox) -> None:
    with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
        start_query(sandbox, "SELECT * FROM read_csv('/etc/passwd')").next_batch()


def test_copy_outside_export_dir_is_refused_twice(sandbox, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.csv"
    with pytest.raises(RefusedStatement, match="only write inside the export directory"):
        start_query(sandbox, f"COPY (SELECT 1) TO '{outside}'")
    # DuckDB's own fence refuses it too, if our statement check were bypassed
    with pytest.raises(duckdb.PermissionException):
        sandbox.cursor().execute(f"COPY (SELECT 1) TO '{outside}'")
    assert not outside.exists()


def test_copy_inside_export_dir_works(sandbox) -> None:
    target = sandbox.export_dir / "five.csv"
    stream = start_query(sandbox, f"COPY (SELECT * FROM range(5)) TO '{target}' (HEADER)")
    stream.next_batch()
    assert target.read_text().splitlines() == ["range", "0", "1", "2", "3", "4"]


def test_configuration_is_locked(sandbox) -> None:
    with pytest.raises(duckdb.Error, match="locked"):
        sandbox.cursor().execute("SET enable_external_access = true")


@pytest.mark.parametrize(
    "sql, kind",
    [
        ("INSERT INTO big VALUES (1, 1)", "INSERT"),
        ("CREATE TEMP TABLE x (i INT)", "CREATE"),
        ("DROP TABLE big", "DROP"),
        ("UPDATE big SET i = 0", "UPDATE"),
        ("SELECT 1; DELETE FROM big", "DELETE"),
        ("ATTACH 'x.duckdb'", "ATTACH"),
        ("SET threads = 1", "SET"),
    ],
)
def test_write_statements_get_a_clear_message(sandbox, sql: str, kind: str) -> None:
    with pytest.raises(RefusedStatement, match=f"{kind} statements are refused.*read-only"):
        start_query(sandbox, sql)


def test_temp_table_refused_even_though_duckdb_would_allow_it(sandbox) -> None:
    # Why the statement filter exists: a read-only DuckDB file still accepts temp tables.
    cur = sandbox.cursor()
    cur.execute("CREATE TEMP TABLE allowed_by_duckdb (i INT)")
    with pytest.raises(RefusedStatement):
        check_read_only("CREATE TEMP TABLE y (i INT)", sandbox.export_dir)


def test_live_run_directory_is_read_only_and_fenced(tmp_path: Path) -> None:
    run = tmp_path / "live"
    (run / "parts" / "q0").mkdir(parents=True)
    part = run / "parts" / "q0" / "tokens.parquet"
    duckdb.sql(
        "SELECT 'q0' AS question_id, 0::SMALLINT AS rollout, range::INTEGER AS pos, "
        "range::INTEGER AS token_id, 'x' AS token_text, NULL::BLOB AS token_bytes, "
        "false AS is_special, 0.0 AS logp, 0.0 AS entropy, true AS probed FROM range(7)"
    ).to_parquet(str(part))
    (run / "run").mkdir()
    duckdb.sql(f"SELECT 'schema_version' AS key, '{SCHEMA_VERSION}' AS value").to_parquet(
        str(run / "run" / "meta.parquet"))
    sb = open_sandbox(run, export_dir=tmp_path / "exp")
    try:
        assert start_query(sb, "SELECT count(*) FROM tokens").next_batch().to_pylist() == [
            {"count_star()": 7}
        ]
        with pytest.raises(RefusedStatement):  # in-memory DB: only our filter stops this
            start_query(sb, "CREATE TABLE t AS SELECT 1")
        with pytest.raises(RefusedStatement):  # cannot overwrite the user's part file
            start_query(sb, f"COPY (SELECT 1) TO '{part}'")
        with pytest.raises(duckdb.PermissionException):
            start_query(sb, "SELECT * FROM read_csv('/etc/passwd')").next_batch()
    finally:
        sb.close()


def test_copy_direction_parser() -> None:
    assert copy_direction_and_target("COPY (SELECT 'to' FROM t) TO 'a''b.csv'") == ("TO", "a'b.csv")
    assert copy_direction_and_target("COPY t FROM '/x.csv'")[0] == "FROM"
    assert copy_direction_and_target("COPY FROM DATABASE a TO b") == ("DATABASE", None)
    assert copy_direction_and_target("copy t to 'x' (format csv)") == ("TO", "x")


def test_copy_from_is_refused(sandbox) -> None:
    with pytest.raises(RefusedStatement, match="COPY ... FROM"):
        start_query(sandbox, f"COPY big FROM '{sandbox.export_dir}/x.csv'")


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql, line, column",
    [
        ("SELEC 1", 1, 1),
        ("SELECT 1,\n  2 +* 3", 2, 5),  # no LINE marker: located by the name DuckDB quotes
        ("SELECT *\nFROM range(3)\nWHERE nope > 1", 3, 7),
        ("SELECT 1 FROM range(3) WHERE 1 + nope > 1", 1, 34),
    ],
)
def test_error_position_matches_the_text(sandbox, sql: str, line: int, column: int) -> None:
    with pytest.raises(duckdb.Error) as err:
        start_query(sandbox, sql).next_batch()
    pos = error_position(str(err.value), sql)
    assert pos is not None and (pos.line, pos.column) == (line, column)


# --- streaming, limit, probe ---------------------------------------------------------------


def test_stream_batches_limit_and_probe(sandbox) -> None:
    stream = start_query(sandbox, "SELECT i FROM big", row_limit=5000, batch_rows=1024)
    seen: list[int] = []
    while (batch := stream.next_batch()) is not None:
        assert batch.num_rows <= 2048
        seen.extend(batch.column(0).to_pylist())
    assert seen == list(range(5000))
    assert stream.rows_fetched == 5000 and stream.truncated and stream.more_available


@pytest.mark.parametrize("n_rows, limit, truncated", [(10, 10, False), (11, 10, True)])
def test_probe_row_at_exact_limit(sandbox, n_rows: int, limit: int, truncated: bool) -> None:
    stream = start_query(sandbox, f"SELECT * FROM range({n_rows})", row_limit=limit)
    rows = []
    while (batch := stream.next_batch()) is not None:
        rows.extend(batch.column(0).to_pylist())
    assert rows == list(range(limit)) and stream.truncated is truncated


def test_stream_is_lazy(sandbox) -> None:
    stream = start_query(sandbox, "SELECT * FROM range(1000000000)", row_limit=10**10)
    batch = stream.next_batch()
    assert batch is not None and stream.rows_fetched == batch.num_rows < 10_000
    assert not stream.exhausted


def test_cancel_interrupts_a_running_query(sandbox) -> None:
    cur = sandbox.cursor()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start_query(
                sandbox, "SELECT count(*) FROM range(100000000000) a", cursor=cur
            ).next_batch()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    cur.interrupt()
    th.join(5)
    assert not th.is_alive() and time.perf_counter() - t0 < 5
    assert errors and isinstance(errors[0], duckdb.InterruptException)


def test_row_window_keeps_memory_bounded_and_refetches(sandbox) -> None:
    stream = start_query(sandbox, "SELECT i, sq FROM big", row_limit=50_000, batch_rows=1000)
    window = RowWindow(sandbox, stream, page_rows=1000, max_pages=4)
    for start in range(0, 20_000, 500):  # scroll down
        window.ensure(start, start + 40)
        assert len(window.cached_pages()) <= 4
    window.ensure(0, 40)  # scroll back to the top: page 0 was dropped and is fetched again
    rows = window.rows(0, 40) + window.rows(19_990, 20_000)
    expected = [(i, i * i) for i in list(range(40)) + list(range(19_990, 20_000))]
    assert rows[:40] == expected[:40]
    assert len(window.cached_pages()) <= 5


def test_row_window_rows_not_resident_are_none(sandbox) -> None:
    stream = start_query(sandbox, "SELECT i FROM big", row_limit=50_000, batch_rows=1000)
    window = RowWindow(sandbox, stream, page_rows=1000, max_pages=2)
    window.ensure(0, 10)
    window.ensure(9000, 9010)
    assert window.rows(0, 2) == [None, None]
    assert window.rows(9000, 9002) == [(9000,), (9001,)]


# --- export --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_formats_round_trip(sandbox, fmt: str) -> None:
    target = sandbox.export_dir / f"out.{fmt}"
    n = export_query(sandbox, "SELECT i, sq FROM big WHERE i < 1000", target, fmt)
    assert n == 1000
    if fmt == "parquet":
        rows = pq.read_table(target).to_pylist()
    elif fmt == "json":
        rows = [json.loads(line) for line in target.read_text().splitlines()]
    else:
        lines = target.read_text().splitlines()
        assert lines[0] == "i,sq"
        rows = [dict(zip(("i", "sq"), map(int, ln.split(",")), strict=True)) for ln in lines[1:]]
    assert rows == [{"i": i, "sq": i * i} for i in range(1000)]


def test_export_outside_dir_refused(sandbox, tmp_path: Path) -> None:
    with pytest.raises(duckdb.PermissionException):
        export_query(sandbox, "SELECT 1", tmp_path / "nope.csv", "csv")


def test_core_does_not_import_textual() -> None:
    code = "import sys, opd_tui.sql, opd_tui.sql.batch; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
