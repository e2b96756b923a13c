"""Run the engine CLI in-process and read back its database."""

from __future__ import annotations

from pathlib import Path

import duckdb
from typer.testing import CliRunner

from engine.cli import app
from engine.runfile import schema


def cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def run_ok(config: Path, *args: str) -> Path:
    code, out = cli("run", str(config), *args)
    assert code == 0, out
    return config.parent / "run" / "run.duckdb"


def table(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def assert_same_question_tables(db_a: Path, db_b: Path,
                                may_be_empty: tuple[str, ...] = ()) -> None:
    """Every question table holds the same rows in both runs (wall-clock seconds aside), and
    is filled unless named in `may_be_empty`."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{db_a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{db_b}' AS b (READ_ONLY)")
    try:
        for t in schema.QUESTION_TABLES:
            cols = ", ".join(c for c in t.column_names if c != "seconds")
            diff = con.execute(f"""SELECT count(*) FROM ((SELECT {cols} FROM a.{t.name} EXCEPT
                                   ALL SELECT {cols} FROM b.{t.name}) UNION ALL (SELECT {cols}
                                   FROM b.{t.name} EXCEPT ALL SELECT {cols} FROM a.{t.name}))
                                """).fetchall()[0][0]
            assert diff == 0, t.name
            n = con.execute(f"SELECT count(*) FROM a.{t.name}").fetchall()[0][0]
            assert n > 0 or t.name in may_be_empty, t.name
    finally:
        con.close()
