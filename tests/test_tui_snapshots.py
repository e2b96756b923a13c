"""SVG snapshots of each screen at a fixed size (textual pinned to 8.2.8 in pyproject.toml).

Review changes with `pytest tests/test_tui_snapshots.py --snapshot-update` and the HTML report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tui_tiny_db

from opd_tui.app import make_app
from opd_tui.screens.rollout import RolloutScreen


@pytest.fixture(autouse=True)
def instant_inspector(monkeypatch: pytest.MonkeyPatch) -> None:
    """No debounce in tests: the inspector query starts as soon as the cursor moves."""
    monkeypatch.setattr(RolloutScreen, "INSPECTOR_DELAY", 0.001)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tui_tiny_db.build(tmp_path_factory.mktemp("snap") / "tiny.duckdb")


async def _settle(pilot) -> None:  # type: ignore[no-untyped-def]
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def _app(db: Path):  # type: ignore[no-untyped-def]
    app = make_app(db)
    app.db.path = Path("tiny.duckdb")  # the status line shows the name, not the tmp path
    return app


def test_overview_snapshot(db: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_app(db), terminal_size=(100, 34), run_before=_settle)


def test_rollout_snapshot_80x24(db: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _settle(pilot)
        for key in ("enter", "enter", "enter", "g", "l", "l"):
            await pilot.press(key)
            await _settle(pilot)

    assert snap_compare(_app(db), terminal_size=(80, 24), run_before=before)


def test_rollout_wide_snapshot(db: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _settle(pilot)
        for key in ("enter", "enter", "enter", "g", "n", "n", "c"):
            await pilot.press(key)
            await _settle(pilot)

    assert snap_compare(_app(db), terminal_size=(150, 30), run_before=before)


def test_console_snapshot(db: Path, tmp_path: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    """The console after a preset-like query: editor with SQL highlighting, status, grid."""
    from opd_tui.console import ConsoleScreen
    from opd_tui.sql.history import History

    app = _app(db)
    sql = ("SELECT question_id, rollout, pos, teacher, round(cos, 3) AS cos\n"
           "FROM scores WHERE signal = 'rkl' ORDER BY ALL LIMIT 30")

    async def before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _settle(pilot)
        console = ConsoleScreen(db, export_dir=tmp_path / "exports",
                                history=History.load(tmp_path / "history.jsonl"))
        await pilot.app.push_screen(console)
        await _settle(pilot)
        editor = console.query_one("#editor")
        editor.cursor_blink = False
        editor.text = sql
        console.run_sql(sql)
        await _settle(pilot)
        console._status_rows(None)  # the status shows timings: drop them for a stable image
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=before)
