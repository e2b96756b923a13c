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
        screen = _wait_for(session, "first_decisive")  # the question's rollouts
        assert "what is 0?" in screen and "incorrect" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        screen = _wait_for(session, "candidates")  # inspector of its first decisive token
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
        _wait_for(session, "rollout.first")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def _keys(session: str, *keys: str) -> None:
    subprocess.run(["tmux", "send-keys", "-t", session, *keys], check=True)


SQL_STRONG_HURTS_OTHER_HELPS = (
    "SELECT s.question_id, s.rollout, s.pos, s.edge FROM scores s JOIN scores o USING "
    "(question_id, rollout, pos, signal) WHERE s.teacher = 'strong' AND s.label_edge = 'hurts' "
    "AND o.teacher <> 'strong' AND o.label_edge = 'helps'")


@pytest.mark.parametrize("no_color", [False, True])
def test_triage_path_at_80x24(tmp_path: Path, no_color: bool) -> None:
    """The path a researcher walks at 80x24: failing questions -> a rollout -> its first
    decisive token -> the continuation texts -> SQL for 'strong hurts where another teacher
    helps' -> CSV export -> a histogram of the result's edge; in colour and with NO_COLOR."""
    db = tui_tiny_db.build(tmp_path / "tiny.duckdb")
    session = f"opd-triage-{tmp_path.name}"
    env = "NO_COLOR=1 " if no_color else ""
    command = (f"cd {tmp_path} && env -u COLUMNS -u LINES {env}PYTHONPATH={REPO} "
               f"{sys.executable} -m opd_tui.cli {db}")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                    command], check=True)
    try:
        _wait_for(session, "decisive nodes (stakes >= 0.1)")
        _keys(session, "Enter")
        _wait_for(session, "hurts_strong")
        _keys(session, "f")
        for ch in "accuracy < 1":
            _keys(session, "-l", ch)
        _keys(session, "Enter")
        screen = _wait_for(session, "2 rows")  # q2 (2 of 2 correct) is filtered out
        _keys(session, "Enter")
        screen = _wait_for(session, "first_decisive")
        assert "incorrect" in screen and "q0" in screen
        _keys(session, "Enter")
        screen = _wait_for(session, "DECISIVE")  # opened at the first decisive token
        assert "q0 rollout 0" in screen and "Q what is 0?" in screen
        _keys(session, "e", "Tab", "End")  # texts at the inspector's end: focus, scroll
        _wait_for(session, "success:")
        _keys(session, "Tab", "q", "q", ":")
        _wait_for(session, "F2")
        _keys(session, "-l", SQL_STRONG_HURTS_OTHER_HELPS)
        _keys(session, "F5")
        _wait_for(session, "rows")
        _keys(session, "F8")
        _wait_for(session, "result.csv")
        _keys(session, "Enter")
        deadline = time.monotonic() + 20
        out = tmp_path / "opd-exports" / "result.csv"
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        con = __import__("duckdb").connect(str(db), read_only=True)
        want = con.execute(f"SELECT count(*) FROM ({SQL_STRONG_HURTS_OTHER_HELPS})").fetchone()[0]
        con.close()
        assert want > 0 and len(out.read_text().splitlines()) == want + 1
        _keys(session, "F3")
        _wait_for(session, "Histogram of one column")
        _keys(session, "Enter")  # the dialog opens on its Plot button
        screen = _wait_for(session, f"histogram of edge · {want:,} rows")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
