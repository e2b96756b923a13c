"""The console's results grid: registry keys (hjkl), sort and filter over the WHOLE result, the
whole-value detail view, and clearing the editor. Driven through the real app with a pilot."""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import pytest
from rich.console import Console
from test_console_screen import Host, _screen_text, _status, _type_and_run, make_db
from textual.widgets import Input, Static, TextArea

from opd_tui import actions
from opd_tui.console.dialogs import CellDetail
from opd_tui.console.grid import MAX_COL_CELLS, ResultsGrid
from opd_tui.console.screen import view_sql


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path)


def _max_value(db: Path) -> float:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT max(value) FROM tokens").fetchone()[0]
    finally:
        con.close()


async def _settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def test_hjkl_move_like_arrows_and_editor_keeps_its_letters(db: Path,
                                                                  tmp_path: Path) -> None:
    app = Host(db, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console, "SELECT * FROM tokens")
        grid = console.query_one(ResultsGrid)
        await pilot.press("f4", "j", "j", "l", "l")
        assert (grid.cursor_row, grid.cursor_col) == (2, 2)
        await pilot.press("down", "right", "k", "h", "up", "left")
        assert (grid.cursor_row, grid.cursor_col) == (1, 1)
        await pilot.press("G")  # to the last fetched row (2,048): that asks for more
        assert grid.cursor_row >= 2047
        await pilot.press("g")
        assert grid.cursor_row == 0
        await pilot.press("f4", "j", "k")  # in the editor the letters are text, not moves
        assert console.query_one("#editor", TextArea).text.startswith("jk")
        assert grid.cursor_row == 0
    # every grid key is in the registry, so help and the palette list it
    keys = {k for a in actions.for_scope("console") for k in a.keys.split(",")}
    assert {"h", "j", "k", "l", "o", "f", "slash", "i", "enter", "ctrl+l"} <= keys


async def test_sort_runs_over_the_whole_result_and_flips(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path, row_limit=100)
    async with app.run_test(size=(100, 30)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console, "SELECT * FROM tokens -- a trailing comment")
        grid = console.query_one(ResultsGrid)
        await pilot.press("f4", "l", "l", "l", "o")  # the `value` column, ascending
        await _settle(pilot)
        assert grid.row_values(0)[3] == 0.0 and grid.sort == (3, False)
        await pilot.press("o")  # again: descending, over all 50,000 rows (not the 100 shown)
        await _settle(pilot)
        assert grid.row_values(0)[3] == _max_value(db) == 24999.5
        assert grid.cursor_col == 3 and grid.sort == (3, True)
        assert "value ▼" in _screen_text(app) and "sorted by value ▼ desc" in _status(console)
        await pilot.press("h", "o")  # another column: ascending again
        await _settle(pilot)
        assert grid.sort == (2, False) and grid.row_values(0)[2] == 0
        assert console.history.entries == ["SELECT * FROM tokens -- a trailing comment"]


async def test_filter_runs_over_the_whole_result(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path, row_limit=1000)
    async with app.run_test(size=(100, 30)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console, "SELECT * FROM tokens LIMIT 100")
        await pilot.press("f4", "o")  # sort by question_id, then filter: both apply
        await _settle(pilot)
        await _type_and_run(pilot, console, "SELECT * FROM tokens")  # a new query: new base
        grid = console.query_one(ResultsGrid)
        assert grid.sort is None
        grid.focus()
        await pilot.press("slash")
        box = console.query_one("#filter", Input)
        assert app.focused is box
        await pilot.press(*"rollout = 2 AND pos = 3 OR value > 24999")
        await pilot.press("enter")
        await _settle(pilot)
        # 500 rows match `rollout = 2 AND pos = 3` among all 50,000, plus the last row
        assert grid.row_count == 501
        assert all(r[1] == 2 and r[2] == 3 for r in console.window.rows(0, 500))
        assert app.focused is grid and "where rollout = 2" in _status(console)
        await pilot.press("f", "ctrl+u", "enter")  # empty: the filter is gone
        await _settle(pilot)
        assert grid.row_count == 1000 and console.view.where is None


@pytest.mark.parametrize("expression, says", [
    ("nosuchcol > 1", "nosuchcol"),          # binder error, from the worker
    ("pos = = 1", "syntax error"),           # parser error, before anything runs
    ("pos = 1; SELECT 2", "syntax error"),    # a `;` inside the parentheses
    ("pos = 1) ; SELECT (2", "one expression"),  # breaking out into a second statement
    ("value::INTEGER > 'abc'", "abc"),       # conversion error while executing
])
async def test_bad_filter_is_answered_in_the_input(db: Path, tmp_path: Path, expression: str,
                                                   says: str) -> None:
    app = Host(db, tmp_path, row_limit=100)
    async with app.run_test(size=(100, 30)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console, "SELECT * FROM tokens")
        grid = console.query_one(ResultsGrid)
        before = grid.row_values(0)
        await pilot.press("f4", "f")
        await pilot.press(*expression)
        await pilot.press("enter")
        await _settle(pilot)
        box = console.query_one("#filter", Input)
        error = str(console.query_one("#filter-error", Static).render())
        assert says in error and "Traceback" not in error
        assert app.focused is box  # the correction typed next goes into the input
        await pilot.press("q", "s")
        assert box.value == expression + "qs" and app.screen is console
        assert grid.row_values(0) == before and console.view.where is None
        await pilot.press("escape")  # closes the filter bar, does not leave the console
        assert app.screen is console and app.focused is grid
        await pilot.press("j")  # the old result still streams
        assert grid.cursor_row == 1


def test_view_sql_keeps_the_filter_and_the_users_comment_apart() -> None:
    sql = view_sql("SELECT 1 AS a -- note", "a = 1 OR a = 2", ("a", True))
    con = duckdb.connect()
    assert con.execute(sql).fetchall() == [(1,)]
    assert sql.endswith('ORDER BY "a" DESC NULLS LAST')


async def test_cell_detail_shows_the_whole_value_and_row(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path)
    long = "ab" * 247 + "THEEND"  # 500 characters
    async with app.run_test(size=(80, 20)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console,
                            f"SELECT 7 AS n, '{long}' AS long, 'short' AS s")
        assert len(long) == 500 and long not in _screen_text(app)  # the grid cuts it
        assert console.query_one(ResultsGrid).widths[1] == MAX_COL_CELLS
        await pilot.press("f4", "l", "i")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, CellDetail)
        console_out = Console(width=80, record=True, file=io.StringIO())
        console_out.print(detail.query_one("#detail-body", Static).content)
        body = console_out.export_text()
        assert long in body.replace("\n", "")
        assert "n: 7" in body and "s: short" in body and body.startswith("long (")
        box = detail.query_one("#detail")
        assert box.max_scroll_y > 0  # 500 characters at 80 columns do not fit: it scrolls
        await pilot.press("pagedown")
        await pilot.pause()
        assert box.scroll_y > 0
        await pilot.press("y")
        assert app.clipboard == long
        await pilot.press("q")
        assert app.screen is console
        await pilot.press("y")  # the grid's copy takes the whole value too
        assert app.clipboard == long


async def test_ctrl_l_clears_the_editor_and_keeps_history(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        console = app.sql_console
        editor = console.query_one("#editor", TextArea)
        await _type_and_run(pilot, console, "SELECT 42 AS answer")
        assert app.focused is editor
        await pilot.press("ctrl+l")
        assert editor.text == "" and app.focused is editor
        assert console.history.entries == ["SELECT 42 AS answer"]
        await pilot.press("ctrl+z")
        assert editor.text == "SELECT 42 AS answer"
        await pilot.press("f4", "ctrl+l")  # from the results too
        assert editor.text == "" and app.focused is editor
        await pilot.press("ctrl+up")
        assert editor.text == "SELECT 42 AS answer"
