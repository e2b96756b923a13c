"""Copy feedback: OSC 52 copies say what the user should expect, and inside tmux whether tmux's
`set-clipboard` will drop them (tmux is never really called: the subprocess is faked)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_console_screen import Host, _type_and_run, make_db

from opd_tui import clipboard


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path)


def _fake_tmux(stdout: str = "", returncode: int = 0, raises: BaseException | None = None):
    calls: list[list[str]] = []

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        assert kwargs["timeout"] == 1
        if raises is not None:
            raise raises
        return subprocess.CompletedProcess(cmd, returncode, stdout, "")

    return run, calls


def test_outside_tmux_nothing_is_asked() -> None:
    run, calls = _fake_tmux("external\n")
    assert clipboard.tmux_set_clipboard({}, run) is None
    assert clipboard.tmux_set_clipboard({"TMUX": ""}, run) is None
    assert calls == []


@pytest.mark.parametrize("stdout, expected", [("external\n", "external"), ("off\n", "off"),
                                              ("on\n", "on"), ("", None)])
def test_tmux_value_is_read(stdout: str, expected: str | None) -> None:
    run, calls = _fake_tmux(stdout)
    assert clipboard.tmux_set_clipboard({"TMUX": "/tmp/tmux-0/default,1,0"}, run) == expected
    assert calls == [["tmux", "show-options", "-gv", "set-clipboard"]]


@pytest.mark.parametrize("fake", [
    _fake_tmux(raises=FileNotFoundError("tmux"))[0],
    _fake_tmux(raises=subprocess.TimeoutExpired("tmux", 1))[0],
    _fake_tmux(raises=PermissionError("tmux"))[0],
    _fake_tmux("external\n", returncode=1)[0],
])
def test_tmux_errors_are_ignored(fake) -> None:  # type: ignore[no-untyped-def]
    assert clipboard.tmux_set_clipboard({"TMUX": "x"}, fake) is None


def test_messages_are_honest() -> None:
    text, warning = clipboard.copy_message("abc", "cell", "external")
    assert warning and "drops OSC 52" in text and "tmux set -g set-clipboard on" in text
    text, warning = clipboard.copy_message("abc", "cell", "off")
    assert warning and "set-clipboard off" in text
    for value in ("on", None):
        text, warning = clipboard.copy_message("abc", "cell", value)
        assert not warning
        assert text == "cell: copied 3 characters (OSC 52: your terminal must allow it)"


@pytest.mark.parametrize("tmux_says, warned", [("external\n", True), ("on\n", False)])
async def test_console_copy_warns_under_dropping_tmux(db: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      tmux_says: str, warned: bool) -> None:
    run, calls = _fake_tmux(tmux_says)
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    monkeypatch.setattr(clipboard.subprocess, "run", run)
    app = Host(db, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        console = app.sql_console
        await _type_and_run(pilot, console, "SELECT question_id, value FROM tokens LIMIT 3")
        await pilot.press("f4", "j", "y")
        assert app.clipboard == "q0"
        await pilot.press("Y")
        assert app.clipboard == "q0\t0.5"
        await pilot.pause()
        notes = [(n.message, n.severity) for n in app._notifications]
        assert len(notes) == 2 and len(calls) == 2
        cell, row = notes
        if warned:
            assert cell[1] == "warning" and "tmux set -g set-clipboard on" in cell[0]
            assert row[0].startswith("row as TSV: 6 characters sent with OSC 52, but tmux")
        else:
            assert cell == ("cell: copied 2 characters (OSC 52: your terminal must allow it)",
                            "information")
