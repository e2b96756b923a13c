"""The SQL sandbox under attack: each escape found by the hostile test of issue 10, reproduced.

Every test states the attack as a user would type it, then checks the damage did not happen
(file bytes unchanged, nothing created, nothing read), not only that a message appeared.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import tui_tiny_db

from opd_tui.sql import RefusedStatement, open_sandbox, start_query
from opd_tui.sql.batch import run_query_cli
from opd_tui.sql.sandbox import SPILL_LIMIT_ENV, SandboxError, describe_error

REPO = Path(__file__).resolve().parents[1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): digest(p) for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tui_tiny_db.build(tmp_path_factory.mktemp("fence") / "run.duckdb")


@pytest.fixture
def live(run_db: Path, tmp_path: Path) -> Path:
    return tui_tiny_db.live_dir(run_db, tmp_path / "live", ["q0", "q1"])


def query(path: Path, sql: str, fmt: str = "csv", output: Path | None = None,
          ) -> tuple[int, bytes, str]:
    import io

    out, err = io.BytesIO(), io.StringIO()
    code = run_query_cli(path, sql, fmt, output, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# --- EXPLAIN ANALYZE runs what it explains -----------------------------------------------------

EXPLAINED_WRITES = [
    "EXPLAIN ANALYZE COPY (SELECT 'pwned' AS question_id) TO '{part}' "
    "(FORMAT parquet, USE_TMP_FILE false)",
    "EXPLAIN (ANALYZE) COPY (SELECT 'pwned' AS question_id) TO '{part}' (FORMAT parquet)",
    "explain /* hide */ analyse -- and here\n COPY (SELECT 1) TO '{part}' (FORMAT parquet)",
    "EXPLAIN COPY (SELECT 1) TO '{part}' (FORMAT parquet)",
    "SELECT 1; EXPLAIN ANALYZE COPY (SELECT 1) TO '{part}' (FORMAT parquet)",
]


@pytest.mark.parametrize("attack", EXPLAINED_WRITES)
def test_explain_analyze_cannot_overwrite_a_live_part(live: Path, tmp_path: Path,
                                                      attack: str) -> None:
    part = live / "parts" / "q0" / "questions.parquet"
    before = tree(live)
    sql = attack.format(part=part)
    sb = open_sandbox(live, export_dir=tmp_path / "exports")
    try:
        with pytest.raises(RefusedStatement, match="EXPLAIN COPY is refused"):
            start_query(sb, sql)
        assert start_query(sb, "SELECT min(question_id) AS q FROM questions").next_batch() \
            .to_pylist() == [{"q": "q0"}]
    finally:
        sb.close()
    code, _, err = query(live, sql)
    assert code == 1 and "refused" in err
    assert tree(live) == before
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("inner", ["CREATE TEMP TABLE t AS SELECT 1 AS x",
                                   "CREATE TEMP MACRO m(a) AS a + 1",
                                   "INSERT INTO tokens SELECT * FROM tokens",
                                   "SET lock_configuration = false"])
def test_explain_analyze_of_any_write_is_refused_and_nothing_is_created(run_db: Path,
                                                                        inner: str) -> None:
    sb = open_sandbox(run_db, exports=False)
    try:
        for prefix in ("EXPLAIN ANALYZE ", "EXPLAIN "):
            with pytest.raises(RefusedStatement, match="is refused"):
                start_query(sb, prefix + inner)
        cur = sb.cursor()
        assert cur.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() \
            == (0,)
        assert cur.execute("SELECT count(*) FROM duckdb_functions() WHERE function_name = 'm'"
                           ).fetchone() == (0,)
        assert cur.execute("SELECT current_setting('lock_configuration')").fetchone() == (True,)
    finally:
        sb.close()


def test_explain_of_a_select_still_works(run_db: Path) -> None:
    sb = open_sandbox(run_db, exports=False)
    try:
        for sql in ("EXPLAIN SELECT 1", "EXPLAIN ANALYZE SELECT count(*) FROM tokens",
                    "EXPLAIN (SELECT 1)", "EXPLAIN ANALYZE (SELECT 2)"):
            assert start_query(sb, sql).next_batch() is not None, sql
    finally:
        sb.close()


# --- --output: only the one file may be written, nothing outside the run read -----------------

@pytest.mark.parametrize("sql", ["SELECT * FROM read_text('/etc/passwd')",
                                 "SELECT * FROM glob('/root/*')",
                                 "SELECT * FROM read_csv('{sibling}')"])
def test_output_path_grants_no_reads(run_db: Path, tmp_path: Path, sql: str) -> None:
    sibling = tmp_path / "secret.csv"
    sibling.write_text("secret\n42\n")
    target = tmp_path / "o.csv"
    code, _, err = query(run_db, sql.format(sibling=sibling), output=target)
    assert code == 1 and "disabled by configuration" in err and "Traceback" not in err
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["secret.csv"]  # no temp file left either


def test_output_path_grants_no_writes_beside_it(run_db: Path, tmp_path: Path) -> None:
    """The reproduced attack: a COPY through --output's directory replaced another run's db."""
    out_dir = tmp_path / "some" / "dir"
    out_dir.mkdir(parents=True)
    other = out_dir / "other.duckdb"
    other.write_bytes(run_db.read_bytes())
    before = digest(other)
    code, _, err = query(run_db, f"COPY (SELECT 1) TO '{other}'; SELECT 1",
                         output=out_dir / "o.csv")
    assert code == 1 and "COPY is refused here" in err and "--output" in err
    assert digest(other) == before and not (out_dir / "o.csv").exists()
    # and DuckDB's own fence holds even where the statement check is bypassed
    sb = open_sandbox(run_db, exports=False)
    try:
        with pytest.raises(duckdb.PermissionException):
            sb.cursor().execute(f"COPY (SELECT 1) TO '{other}'")
        with pytest.raises(duckdb.PermissionException):
            sb.cursor().execute(f"COPY (SELECT 1) TO '{out_dir / 'o.csv'}'")
    finally:
        sb.close()
    assert digest(other) == before


def test_output_file_appears_whole_and_replaces(run_db: Path, tmp_path: Path) -> None:
    target = tmp_path / "new" / "r.csv"
    code, _, err = query(run_db, "SELECT question_id FROM questions ORDER BY 1", output=target)
    assert code == 0 and "wrote 3 rows" in err
    assert target.read_text().splitlines() == ["question_id", "q0", "q1", "q2"]
    code, _, _ = query(run_db, "SELECT 7 AS x", output=target)
    assert code == 0 and target.read_text().splitlines() == ["x", "7"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.csv"]
    code, _, err = query(run_db, "SELECT nope", output=target)  # a failure leaves it alone
    assert code == 1 and target.read_text().splitlines() == ["x", "7"]


def test_output_into_the_run_or_onto_it_is_refused(live: Path, run_db: Path) -> None:
    before = tree(live)
    for target in (live / "parts" / "q0" / "questions.parquet", live / "x.csv"):
        code, _, err = query(live, "SELECT 1", output=target)
        assert code == 2 and "inside the run" in err
    assert tree(live) == before
    before_db = digest(run_db)
    code, _, err = query(run_db, "SELECT 1", output=run_db)
    assert code == 2 and digest(run_db) == before_db


def test_export_dir_overlapping_the_run_is_refused(live: Path) -> None:
    for export_dir in (live, live / "parts", live.parent):
        with pytest.raises(SandboxError, match="overlaps the run"):
            open_sandbox(live, export_dir=export_dir)


def test_console_copy_lands_only_in_the_export_dir_made_on_demand(live: Path,
                                                                  tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    sb = open_sandbox(live, export_dir=exports)
    try:
        assert not exports.exists()  # opening writes nothing
        start_query(sb, f"COPY (SELECT 1 AS one) TO '{exports}/one.csv'").next_batch()
        assert (exports / "one.csv").read_text().splitlines() == ["one", "1"]
        with pytest.raises(RefusedStatement, match="export directory"):
            start_query(sb, f"COPY (SELECT 1) TO '{exports}/../escape.csv'")
    finally:
        sb.close()
    assert not (tmp_path / "escape.csv").exists()


# --- spill: private directory, capped --------------------------------------------------------

SPILLING = ("SELECT sum(r) FROM (SELECT row_number() OVER (ORDER BY hash(i)) AS r "
            "FROM range(3000000) t(i))")


def test_spill_goes_to_a_private_capped_dir(run_db: Path, monkeypatch: pytest.MonkeyPatch,
                                            ) -> None:
    monkeypatch.setenv(SPILL_LIMIT_ENV, "8MB")
    sb = open_sandbox(run_db, exports=False, memory_limit="24MB")
    cur = sb.cursor()
    spill = Path(cur.execute("SELECT current_setting('temp_directory')").fetchone()[0])
    assert spill.parent == sb.scratch and oct(sb.scratch.stat().st_mode & 0o777) == "0o700"
    cap = cur.execute("SELECT current_setting('max_temp_directory_size')").fetchone()[0]
    assert cap.replace(" ", "") in ("7.6MiB", "8.0MB", "7.6MB"), cap
    with pytest.raises(duckdb.Error, match="locked"):  # a user's SET cannot lift the cap
        cur.execute("SET max_temp_directory_size = '1TB'")
    cur.close()
    try:
        with pytest.raises(duckdb.Error) as caught:
            sb.cursor().execute(SPILLING).fetchall()
        message = describe_error(caught.value, sb)
        assert "spill cap of 8MB" in message and SPILL_LIMIT_ENV in message
    finally:
        sb.close()
    assert not sb.scratch.exists()
    assert not Path(str(run_db) + ".tmp").exists()  # never beside the user's data
    assert sorted(p.name for p in run_db.parent.iterdir()) == ["run.duckdb"]


def test_bad_spill_limit_is_one_message(run_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SPILL_LIMIT_ENV, "lots")
    code, _, err = query(run_db, "SELECT 1")
    assert code == 2 and f"{SPILL_LIMIT_ENV}='lots'" in err and "Traceback" not in err


# --- schema check on --query -------------------------------------------------------------------

@pytest.mark.parametrize("version, needle", [("abc", "not a version number"),
                                             ("999", "newer engine")])
def test_query_checks_the_schema(run_db: Path, tmp_path: Path, version: str,
                                 needle: str) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(run_db.read_bytes())
    con = duckdb.connect(str(bad))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [version])
    con.close()
    code, out, err = query(bad, "SELECT 1")
    assert code == 2 and needle in err and out == b"" and "Traceback" not in err


# --- signals and pipes (real processes) --------------------------------------------------------

def _cli(*args: str, **kw) -> subprocess.Popen:  # type: ignore[no-untyped-def, type-arg]
    return subprocess.Popen([sys.executable, "-m", "opd_tui.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_ctrl_c_on_a_running_query_is_one_line_and_130(run_db: Path, tmp_path: Path) -> None:
    target = tmp_path / "never.csv"
    proc = _cli(str(run_db), "--query",
                "SELECT count(*) FROM range(100000000000) t(i) WHERE hash(i) = 7",
                "--output", str(target), start_new_session=True)
    time.sleep(3)  # imports done, DuckDB busy inside the query
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 20  # DuckDB was interrupted, not waited for
    assert err.decode().strip().splitlines() == [f"opd-tui: interrupted; {target} was not written"]
    assert not target.exists()


def test_closed_pipe_is_quiet_and_zero(run_db: Path) -> None:
    for fmt in ("csv", "json"):
        proc = _cli(str(run_db), "--query", "SELECT * FROM range(20000000)", "--format", fmt)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # what `| head -1` does
        _, err = proc.communicate(timeout=120)
        assert first and proc.returncode == 0 and err == b"", err


def test_opening_the_tui_writes_nothing_in_the_cwd(run_db: Path, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("OPD_TUI_EXPORT_DIR", None)
    code = ("import asyncio\nfrom opd_tui.app import make_app\n"
            "async def go():\n"
            f"    app = make_app({str(run_db)!r})\n"
            "    async with app.run_test() as pilot:\n"
            "        await pilot.press('colon')\n"
            "        await pilot.pause()\n"
            "        await app.workers.wait_for_complete()\n"
            "asyncio.run(go())\n")
    work = tmp_path / "cwd"
    work.mkdir()
    subprocess.run([sys.executable, "-c", code], cwd=work, env={**env, "PYTHONPATH": str(REPO)},
                   check=True, timeout=120)
    assert list(work.iterdir()) == []
