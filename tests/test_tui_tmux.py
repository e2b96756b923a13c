"""The real `opd-tui` in a real terminal (tmux): keys arrive as a user's would over SSH."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tui_tiny_db

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def _screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                          text=True, check=True).stdout


def _wait_for(session: str, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = _screen(session)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; screen was:\n{_screen(session)}")


def test_real_terminal_session(tmp_path: Path) -> None:
    db = tui_tiny_db.build(tmp_path / "tiny.duckdb")
    session = f"opd-tui-test-{tmp_path.name}"
    # COLUMNS/LINES leak into tmux from some test runners and would pin the app at 80x24
    command = (f"cd {REPO} && env -u COLUMNS -u LINES PYTHONPATH={REPO} {sys.executable} "
               f"-m opd_tui.cli {db}")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                    command], check=True)
    try:
        _wait_for(session, "decisive nodes (stakes >= 0.1), signal rkl")
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        screen = _wait_for(session, "hurts_strong")
        assert "edge_strong" in screen and "q0: what is 0?" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        screen = _wait_for(session, "candidates")  # inspector of token 0
        assert "q0 rollout 0" in screen and "layer: edge" in screen
        assert "stakes .50[.40,.60]  DECISIVE" in screen  # 15 vs 5 successes of 20
        assert "[bold␣red]x[/]" in screen  # markup shown as text, never interpreted
        assert "␛[31m" in screen and "\x1b" not in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "l", "l"], check=True)
        _wait_for(session, "pos 2 t2")
        _wait_for(session, "not decisive")
        subprocess.run(["tmux", "send-keys", "-t", session, "]"], check=True)
        _wait_for(session, "q0 rollout 1")
        subprocess.run(["tmux", "send-keys", "-t", session, "?"], check=True)
        _wait_for(session, "rollout.next_significant")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
