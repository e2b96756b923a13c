"""Non-interactive `opd-tui FILE --query SQL --format ...` on the console's core."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from opd_tui.sql.batch import run_query_cli

SQL = "SELECT range AS i, 'a,\"b' AS s FROM range(5)"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "x.duckdb"
    duckdb.connect(str(path)).close()
    return path


def _run(db: Path, sql: str, fmt: str, output: Path | None = None) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    code = run_query_cli(db, sql, fmt, output, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_csv_to_stdout_quotes_like_duckdb(db: Path) -> None:
    code, out, _ = _run(db, SQL, "csv")
    assert code == 0
    assert out.decode().splitlines() == ["i,s"] + [f'{i},"a,""b"' for i in range(5)]


def test_json_lines_to_stdout(db: Path) -> None:
    code, out, _ = _run(db, SQL, "json")
    assert code == 0
    assert [json.loads(x) for x in out.decode().splitlines()] == [
        {"i": i, "s": 'a,"b'} for i in range(5)
    ]


def test_parquet_to_file_and_stdout_refused(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "r.parquet"
    code, _, err = _run(db, SQL, "parquet", target)
    assert code == 0 and "wrote 5 rows" in err
    assert pq.read_table(target).column("i").to_pylist() == list(range(5))
    code, out, err = _run(db, SQL, "parquet")
    assert code == 2 and out == b"" and "--output" in err


@pytest.mark.parametrize(
    "sql, fmt, code, needle",
    [
        ("CREATE TABLE t (i INT)", "csv", 1, "refused: CREATE statements are refused"),
        ("SELECT * FROM read_csv('/etc/passwd')", "csv", 1, "disabled by configuration"),
        ("SELEC 1", "csv", 1, "syntax error"),
        ("SELECT 1", "xml", 2, "unknown --format"),
    ],
)
def test_mistakes_get_one_line_no_traceback(db: Path, sql: str, fmt: str, code: int,
                                            needle: str) -> None:
    got, out, err = _run(db, sql, fmt)
    assert got == code and needle in err and "Traceback" not in err and out == b""


def test_missing_file(tmp_path: Path) -> None:
    code, _, err = _run(tmp_path / "nope.duckdb", "SELECT 1", "csv")
    assert code == 2 and "no run database" in err


def test_cli_entry_point_streams_to_stdout(db: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "opd_tui.cli", str(db), "--query", "SELECT 42 AS answer",
         "--format", "csv"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["answer", "42"]
