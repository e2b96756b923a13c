"""The console inside the real browsing app: opened from the registry, jumps to the rollout."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import TextArea
from tui_tiny_db import build

from opd_tui.console import ConsoleScreen
from opd_tui.sql.history import History


@pytest.fixture
def app_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("OPD_TUI_EXPORT_DIR", str(tmp_path / "exports"))
    return build(tmp_path / "tiny.duckdb")


async def test_colon_opens_console_and_enter_opens_the_token(app_path: Path) -> None:
    from opd_tui.app import make_app

    app = make_app(app_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("colon")
        await pilot.pause()
        console = app.screen
        assert isinstance(console, ConsoleScreen)
        assert str(History.load().path).startswith(str(app_path.parent / "data"))
        console.query_one("#editor", TextArea).text = (
            "SELECT question_id, rollout, pos FROM tokens WHERE question_id = 'q1' "
            "AND rollout = 1 AND pos = 4")
        await pilot.press("ctrl+j")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("f4", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert type(screen).__name__ == "RolloutScreen"
        assert (screen.question_id, screen.rollout, screen.start_pos) == ("q1", 1, 4)


async def test_help_lists_the_console_keys_and_the_grid_keys_work_in_the_app(
        app_path: Path) -> None:
    """In the real app: F1 lists clear / sort / filter / detail / hjkl; a bad filter keeps the
    focus in its input, so `q` typed next is text, not "back"."""
    import io

    from rich.console import Console
    from textual.widgets import Input

    from opd_tui.app import make_app
    from opd_tui.console.grid import ResultsGrid

    app = make_app(app_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("colon")
        await pilot.pause()
        console = app.screen
        assert isinstance(console, ConsoleScreen)
        await pilot.press("f1")
        await pilot.pause()
        out = Console(width=200, record=True, file=io.StringIO())
        out.print(app.screen.body)
        text = out.export_text()
        for needle in ("ctrl+l", "Clear the SQL editor", "Sort the whole result", "Filter the "
                       "whole result", "Whole cell value and row", "↓ j"):
            assert needle in text, needle
        await pilot.press("escape")
        assert app.screen is console
        console.query_one("#editor", TextArea).text = "SELECT question_id, rollout, pos FROM tokens"
        await pilot.press("ctrl+j")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("f4", "f", *"nope = 1", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        box = console.query_one("#filter", Input)
        assert app.focused is box and "nope" in str(console.query_one("#filter-error").render())
        await pilot.press("q")
        assert app.screen is console and box.value == "nope = 1q"
        await pilot.press("escape")  # closes the filter, focus back on the grid
        assert isinstance(app.focused, ResultsGrid) and app.screen is console
        await pilot.press("q")  # now q is the app's "back"
        await pilot.pause()
        assert app.screen is not console
