"""Pilot tests of the SQL console: run, stream, limit, cancel, errors, refusal, jump, export.

Plots are in test_console_plot.py; sort, filter, keys and cell detail in test_console_grid.py.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from textual.app import App
from textual.widgets import Static, TextArea

from opd_tui.console import ConsoleScreen
from opd_tui.console.grid import ResultsGrid
from opd_tui.sql.history import History
from opd_tui.sql.presets import PRESETS


def make_db(tmp_path: Path) -> Path:
    """50,000 token rows: question q0..q499, rollout 0..9, pos 0..9, value = row * 0.5."""
    path = tmp_path / "run.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE tokens AS SELECT 'q' || (range // 100) AS question_id, "
        "((range // 10) % 10)::SMALLINT AS rollout, (range % 10)::INTEGER AS pos, "
        "range * 0.5 AS value FROM range(50000)"
    )
    con.close()
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path)


class Host(App[None]):
    """Stands in for the browsing app: records jumps."""

    def __init__(self, db: Path, tmp: Path, row_limit: int = 100_000) -> None:
        super().__init__()
        self.jumps: list[tuple[str, int, int]] = []
        self.sql_console = ConsoleScreen(db, export_dir=tmp / "exports", row_limit=row_limit,
                                     history=History.load(tmp / "history.jsonl"))

    def on_mount(self) -> None:
        self.push_screen(self.sql_console)

    def open_token(self, question_id: str, rollout: int, pos: int) -> None:
        self.jumps.append((question_id, rollout, pos))


async def _type_and_run(pilot, console: ConsoleScreen, sql: str, key: str = "ctrl+j") -> None:
    console.query_one("#editor", TextArea).text = sql
    await pilot.press(key)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def _status(console: ConsoleScreen) -> str:
    return str(console.query_one("#console-status", Static).render())


@pytest.mark.parametrize("key", ["ctrl+j", "f5"])
async def test_run_streams_first_page_and_reports_more(db: Path, tmp_path: Path, key: str) -> None:
    app = Host(db, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await _type_and_run(pilot, app.sql_console, "SELECT * FROM tokens", key)
        grid = app.sql_console.query_one(ResultsGrid)
        assert 0 < grid.row_count < 50000
        assert "more available" in _status(app.sql_console)
        assert grid.row_values(3) == ("q0", 0, 3, 1.5)
        grid.focus()
        await pilot.press("G")  # to the end of what is fetched: asks for more rows
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert grid.row_count > 2048


async def test_row_limit_with_probe_row(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path, row_limit=100)
    async with app.run_test(size=(100, 30)) as pilot:
        await _type_and_run(pilot, app.sql_console, "SELECT * FROM tokens")
        assert "showing 100 of >100" in _status(app.sql_console)
        await _type_and_run(pilot, app.sql_console, "SELECT * FROM tokens LIMIT 100")
        text = _status(app.sql_console)
        assert "100 rows fetched" in text and ">" not in text


async def test_errors_shown_inline_with_position(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await _type_and_run(pilot, app.sql_console, "SELECT *\nFROM tokens\nWHER pos = 1")
        text = _status(app.sql_console)
        assert text.startswith("line 3") and "syntax error" in text
        assert app.sql_console.query_one("#editor", TextArea).cursor_location[0] == 2
        await _type_and_run(pilot, app.sql_console, "INSERT INTO tokens VALUES ('x', 0, 0, 0)")
        assert "INSERT statements are refused" in _status(app.sql_console)
        await _type_and_run(pilot, app.sql_console, "SELECT * FROM read_csv('/etc/passwd')")
        assert "disabled by configuration" in _status(app.sql_console)
        assert app.is_running


async def test_cancel_long_query_keeps_ui_responsive(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        app.sql_console.query_one("#editor", TextArea).text = (
            "SELECT count(*) FROM range(100000000000) a"
        )
        await pilot.press("ctrl+j")
        await pilot.pause(0.3)
        assert app.sql_console.running
        await pilot.press("f4")  # the UI still reacts while DuckDB works
        await pilot.pause()
        assert app.sql_console.query_one(ResultsGrid).has_focus
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not app.sql_console.running and "cancelled" in _status(app.sql_console)
        await _type_and_run(pilot, app.sql_console, "SELECT 1 AS one")  # usable afterwards
        assert app.sql_console.query_one(ResultsGrid).row_values(0) == (1,)


async def test_enter_jumps_to_token(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await _type_and_run(pilot, app.sql_console,
                            "SELECT question_id, rollout, pos, value FROM tokens WHERE value > 600")
        await pilot.press("f4", "down", "down", "enter")
        assert app.jumps == [("q12", 0, 3)]  # value 601.5 is row 1203: q12, rollout 0, pos 3


async def test_export_dialog_writes_full_result(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path, row_limit=10)
    async with app.run_test(size=(100, 30)) as pilot:
        await _type_and_run(pilot, app.sql_console, "SELECT * FROM tokens WHERE pos = 0")
        await pilot.press("f8")
        await pilot.pause()
        await pilot.press("enter")  # default: result.csv
        await app.workers.wait_for_complete()
        await pilot.pause()
        out = tmp_path / "exports" / "result.csv"
        assert len(out.read_text().splitlines()) == 5000 + 1  # not cut at the grid's row limit


async def test_preset_menu_loads_editable_sql(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.sql_console.query_one("#editor", TextArea).text == PRESETS[0].sql


async def test_history_persists_and_browses(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await _type_and_run(pilot, app.sql_console, "SELECT 1")
        await _type_and_run(pilot, app.sql_console, "SELECT 2")
        app.sql_console.query_one("#editor", TextArea).text = ""
        await pilot.press("ctrl+up")
        assert app.sql_console.query_one("#editor", TextArea).text == "SELECT 2"
    assert History.load(tmp_path / "history.jsonl").entries == ["SELECT 1", "SELECT 2"]


async def test_console_caps_duckdb_memory(db: Path, tmp_path: Path) -> None:
    from opd_tui.console.screen import MEMORY_LIMIT

    app = Host(db, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        sandbox = app.sql_console.sandbox
        assert sandbox is not None and MEMORY_LIMIT == "512MB"
        limit = sandbox.cursor().execute("SELECT current_setting('memory_limit')").fetchall()
        value, unit = limit[0][0].split()
        assert unit == "MiB" and float(value) == pytest.approx(512e6 / 2**20, abs=0.1)


def _screen_text(app: App[None]) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
