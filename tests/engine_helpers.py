"""Run the engine CLI in-process and read back its database."""

from __future__ import annotations

from pathlib import Path

import duckdb
from typer.testing import CliRunner

from engine.cli import app


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
