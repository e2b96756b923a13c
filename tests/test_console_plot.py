"""F3 plots cover the WHOLE result (computed in DuckDB), not the rows the grid holds.

Every expected number is computed here independently, on a separate DuckDB connection to the
same file, and the grid is kept far smaller than the result (row limit 100 of 50,000 rows).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from test_console_screen import Host, _screen_text, _type_and_run, make_db
from textual.widgets import Select

from opd_tui.console.dialogs import PlotDialog
from opd_tui.console.grid import ResultsGrid
from opd_tui.console.plot import (
    HIST_BINS,
    MAX_SCATTER_POINTS,
    PlotData,
    PlotRequest,
    PlotScreen,
    compute_plot,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path)


def _independent(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def _plot(pilot, kind: str | None = None, x: str | None = None,
                y: str | None = None) -> PlotData:
    """F3, optionally change the dialog's choices, Enter on Plot; return the drawn data."""
    app = pilot.app
    await pilot.press("f3")
    await pilot.pause()
    dialog = app.screen
    assert isinstance(dialog, PlotDialog)
    if kind is not None:
        dialog.query_one("#kind", Select).value = kind
        await pilot.pause()
    if x is not None:
        dialog.query_one("#a", Select).value = x
    if y is not None:
        dialog.query_one("#b", Select).value = y
    await pilot.pause()
    await pilot.press("enter")  # focus is on the Plot button
    await app.workers.wait_for_complete()
    await pilot.pause()
    assert isinstance(app.screen, PlotScreen), type(app.screen)
    return app.screen.data


async def test_histogram_counts_the_whole_result_not_the_grid(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path, row_limit=100)
    async with app.run_test(size=(120, 40)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console, "SELECT question_id, value FROM tokens")
        assert console.query_one(ResultsGrid).row_count == 100  # the grid holds 100 rows only
        data = await _plot(pilot)  # defaults: a histogram of `value`
        (total,) = _independent(db, "SELECT count(*) FROM tokens")[0]
        assert data.kind == "hist" and len(data.ys) == HIST_BINS
        assert sum(data.ys) == total == data.rows == 50_000
        # bin 0 holds [min, min + width): the same count straight from DuckDB
        lo, width = data.xs[0] - data.bin_width / 2, data.bin_width
        (first,) = _independent(db, f"SELECT count(*) FROM tokens WHERE value < {lo + width!r}")[0]
        assert data.ys[0] == first
        assert "histogram of value · 50,000 rows" in _screen_text(app)
        await pilot.press("escape")
        assert app.screen is console


async def test_histogram_says_what_it_left_out_and_bins_integers(db: Path,
                                                                tmp_path: Path) -> None:
    app = Host(db, tmp_path, row_limit=100)
    async with app.run_test(size=(120, 40)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console, "SELECT CASE WHEN pos = 0 THEN NULL "
                            "WHEN pos = 1 THEN 'nan'::DOUBLE ELSE value END AS v FROM tokens")
        data = await _plot(pilot)
        (finite,) = _independent(db, "SELECT count(*) FROM tokens WHERE pos > 1")[0]
        assert sum(data.ys) == finite == 40_000 and data.rows == 50_000
        assert "10,000 NULL/NaN/inf not counted" in data.title
        await pilot.press("escape")
        await _type_and_run(pilot, console, "SELECT pos FROM tokens")
        data = await _plot(pilot, x="pos")
        assert data.xs == [float(p) for p in range(10)]  # one bin per integer value
        assert data.ys == [5000.0] * 10


async def test_filter_then_plot_covers_the_filtered_whole_result(db: Path,
                                                                 tmp_path: Path) -> None:
    app = Host(db, tmp_path, row_limit=100)
    async with app.run_test(size=(120, 40)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console, "SELECT * FROM tokens")
        await pilot.press("f4", "f")
        await pilot.press(*"pos < 3")
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        data = await _plot(pilot, kind="hist", x="value")
        (expected,) = _independent(db, "SELECT count(*) FROM tokens WHERE pos < 3")[0]
        assert sum(data.ys) == data.rows == expected == 15_000


async def test_scatter_is_points_sampled_deterministically(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path, row_limit=100)
    async with app.run_test(size=(120, 40)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console, "SELECT rollout, pos, value FROM tokens")
        data = await _plot(pilot, kind="scatter", x="pos", y="value")
        assert data.kind == "scatter" and data.rows == 50_000
        assert len(data.xs) == MAX_SCATTER_POINTS  # 50,000 distinct points: a capped sample
        assert f"{MAX_SCATTER_POINTS:,} of 50,000 distinct points" in data.title
        real = set(_independent(db, "SELECT pos::DOUBLE, value FROM tokens"))
        assert set(zip(data.xs, data.ys, strict=True)) <= real
        again = compute_plot(console.sandbox.cursor(), console.view.base,
                             PlotRequest("scatter", "pos", "value"))
        assert (again.xs, again.ys) == (data.xs, data.ys)  # same data, same sample
        await pilot.press("escape")
        small = await _plot(pilot, kind="scatter", x="rollout", y="pos")
        assert len(small.xs) == 100 and "all 100 distinct points" in small.title


async def test_mean_by_position_is_one_line_of_group_means(db: Path, tmp_path: Path) -> None:
    """Chosen with the keyboard only: shift+tab to the kind, open it, pick the third kind."""
    app = Host(db, tmp_path, row_limit=100)
    async with app.run_test(size=(120, 40)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console,
                            "SELECT question_id, rollout, pos, value FROM tokens")
        await pilot.press("f3")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, PlotDialog)
        await pilot.press("shift+tab", "shift+tab")  # Plot -> column -> kind (no y: a histogram)
        assert app.focused is dialog.query_one("#kind", Select)
        await pilot.press("enter", "down", "down", "enter")
        await pilot.pause()
        assert dialog.request() == PlotRequest("by_pos", "pos", "value")
        await pilot.press("tab", "tab", "tab", "enter")  # kind -> position -> mean of -> Plot
        await app.workers.wait_for_complete()
        await pilot.pause()
        data = app.screen.data
        expected = _independent(db, "SELECT pos, avg(value) FROM tokens GROUP BY pos ORDER BY pos")
        assert data.kind == "by_pos" and data.rows == 50_000
        assert data.xs == [float(p) for p, _ in expected]
        assert data.ys == pytest.approx([m for _, m in expected])
        assert "mean of value by pos · 50,000 rows, 10 pos values" in _screen_text(app)
        await pilot.press("y")
        assert app.clipboard.splitlines()[1] == "pos\tmean value"


async def test_plot_needs_numbers_and_a_select(db: Path, tmp_path: Path) -> None:
    app = Host(db, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console, "SELECT 'a' AS s")
        await pilot.press("f4", "f3")
        await pilot.pause()
        assert app.screen is console
        assert "nothing numeric to plot" in str(console.query_one("#console-status").render())


async def test_odd_column_names_are_quoted_and_never_markup(db: Path, tmp_path: Path) -> None:
    """Names come from the user's SQL: quotes, brackets and markup must neither break the
    generated SQL nor the dialog (Select parses a str prompt as markup)."""
    app = Host(db, tmp_path, row_limit=100)
    async with app.run_test(size=(120, 40)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console,
                            'SELECT pos AS "p[o]s", value AS "va""l[/]" FROM tokens')
        data = await _plot(pilot, x='va"l[/]')
        assert data.xlabel == 'va"l[/]' and sum(data.ys) == 50_000
        await pilot.press("escape")
        data = await _plot(pilot, kind="by_pos")
        assert data.xlabel == "p[o]s" and len(data.xs) == 10
        await pilot.press("escape")
        await pilot.press("f4", "l", "o", "o")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert console.query_one(ResultsGrid).row_values(0)[1] == 24999.5
