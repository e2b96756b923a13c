"""Console history persists across sessions in the user's data dir (XDG_DATA_HOME)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opd_tui.sql.history import History, history_path


def test_history_lives_under_xdg_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert history_path().is_relative_to(tmp_path)


def test_history_round_trip_and_browsing(tmp_path: Path) -> None:
    path = tmp_path / "h" / "sql_history.jsonl"
    h = History.load(path)
    for sql in ["SELECT 1", "SELECT 1", "  SELECT 2\n", ""]:
        h.add(sql)
    again = History.load(path)  # a new session
    assert again.entries == ["SELECT 1", "SELECT 2"]
    assert [again.previous(), again.previous(), again.previous()] == ["SELECT 2", "SELECT 1", None]
    assert [again.next(), again.next()] == ["SELECT 2", None]


def test_corrupt_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "sql_history.jsonl"
    path.write_text('{"sql": "SELECT 1"}\nnot json\n{"nosql": 1}\n{"sql": "SELECT 3"}\n')
    assert History.load(path).entries == ["SELECT 1", "SELECT 3"]
