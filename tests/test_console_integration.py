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
