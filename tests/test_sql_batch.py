"""Non-interactive `opd-tui FILE --query SQL --format ...` on the console's core."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tui_tiny_db import build

from opd_tui.sql.batch import run_query_cli

SQL = "SELECT range AS i, 'a,\"b' AS s FROM range(5)"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return build(tmp_path / "x.duckdb")


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


MIXED = ("SELECT i, i * 0.25 AS x, CASE WHEN i % 7 = 0 THEN NULL ELSE 'v' || i END AS s, "
         "'q\"u,o' || chr(10) || 'te' AS hard, DATE '2024-01-01' + i::INT AS d "
         "FROM range(5000) t(i)")


def test_streamed_csv_reads_back_like_duckdbs_writer(db: Path, tmp_path: Path) -> None:
    """stdout (streamed through pyarrow) and --output (DuckDB's COPY) parse to the same rows."""
    import csv

    code, out, _ = _run(db, MIXED, "csv")
    assert code == 0
    target = tmp_path / "out" / "r.csv"
    assert _run(db, MIXED, "csv", target)[0] == 0
    streamed = list(csv.reader(io.StringIO(out.decode())))
    written = list(csv.reader(io.StringIO(target.read_text())))
    assert streamed[0] == written[0] == ["i", "x", "s", "hard", "d"]
    assert len(streamed) == len(written) == 5001
    for a, b in zip(streamed[1:], written[1:], strict=True):
        assert a[0] == b[0] and float(a[1]) == float(b[1]) and a[2:] == b[2:]


def test_streamed_json_lines_match_duckdbs_writer(db: Path, tmp_path: Path) -> None:
    code, out, _ = _run(db, MIXED, "json")
    target = tmp_path / "out" / "r.jsonl"
    assert code == 0 and _run(db, MIXED, "json", target)[0] == 0
    streamed = [json.loads(x) for x in out.decode().splitlines()]
    written = [json.loads(x) for x in target.read_text().splitlines()]
    assert streamed == written


class _Recorder(io.BytesIO):
    """stdout that remembers how many bytes each write carried."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(len(data))
        return super().write(data)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_stdout_is_written_batch_by_batch(db: Path, fmt: str) -> None:
    """A big result reaches stdout in many writes, not one file copied at the end."""
    out, err = _Recorder(), io.StringIO()
    assert run_query_cli(db, "SELECT range AS i FROM range(100000)", fmt, None, stdout=out,
                         stderr=err) == 0
    assert len(out.writes) >= 100_000 // 2048
    lines = out.getvalue().decode().splitlines()
    assert len(lines) == 100_000 + (fmt == "csv")


def test_nested_columns_fall_back_to_duckdbs_csv(db: Path, tmp_path: Path) -> None:
    sql = "SELECT [1, 2] AS l, {'a': 1} AS st"
    code, out, _ = _run(db, sql, "csv")
    target = tmp_path / "out" / "n.csv"
    assert code == 0 and _run(db, sql, "csv", target)[0] == 0
    assert out == target.read_bytes()
