"""Copy text to the user's clipboard with OSC 52 and say honestly what may have happened.

A terminal application cannot learn whether an OSC 52 copy arrived: the terminal may refuse it
and tmux, by default (`set-clipboard external`), silently drops it. So the notice names the one
case we can detect (tmux's option) with its fix, and otherwise says what the copy depends on.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from textual.app import App

TMUX_FIX = "tmux set -g set-clipboard on"
DROPPING = frozenset({"external", "off"})
"""tmux `set-clipboard` values under which an application's OSC 52 never reaches the terminal."""

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def tmux_set_clipboard(env: Mapping[str, str] | None = None,
                       run: Runner | None = None) -> str | None:
    """tmux's global `set-clipboard` value, or None outside tmux or when tmux cannot be asked.

    Never raises and never waits more than a second: the answer only improves a notice.
    """
    env = os.environ if env is None else env
    if not env.get("TMUX"):
        return None
    run = run or subprocess.run  # looked up per call, so tests can patch subprocess.run
    try:
        done = run(["tmux", "show-options", "-gv", "set-clipboard"], capture_output=True,
                   text=True, timeout=1, check=False)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if done.returncode != 0:
        return None
    value = (done.stdout or "").strip()
    return value or None


def copy_message(text: str, what: str, tmux_value: str | None) -> tuple[str, bool]:
    """(notice, is_warning) for copying `text`; `what` names it ("cell", "row as TSV")."""
    n = len(text)
    if tmux_value in DROPPING:
        return (f"{what}: {n:,} characters sent with OSC 52, but tmux has set-clipboard "
                f"{tmux_value}, which drops OSC 52 copies from apps. Fix: {TMUX_FIX}"), True
    return f"{what}: copied {n:,} characters (OSC 52: your terminal must allow it)", False


def copy(app: App[Any], text: str, what: str) -> None:
    """Copy `text` via `app.copy_to_clipboard` (OSC 52) and notify what the user should expect."""
    app.copy_to_clipboard(text)
    message, warning = copy_message(text, what, tmux_set_clipboard())
    app.notify(message, severity="warning" if warning else "information",
               timeout=8 if warning else 3)
