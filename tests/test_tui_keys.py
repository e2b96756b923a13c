"""Property test: no key sequence crashes the TUI.

Hypothesis drives the real app over the demo database with random sequences of every
registered key, printable text, Esc, ctrl keys, pauses that let workers finish, and terminal
resizes, under both colour modes, and asserts that the app never raised. A crash in a handler,
a worker or a render surfaces as the exception `run_test` re-raises.

Profiles (`OPD_TUI_KEYS`): `ci` (default) 200 sequences of up to 20 events; `long` 100
sequences of exactly 100 events, 10,000 in all, run by hand before closing TUI work:
`OPD_TUI_KEYS=long .venv/bin/python -m pytest tests/test_tui_keys.py -q`.
"""

from __future__ import annotations

import asyncio
import os
import string
from pathlib import Path

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual.keys import _character_to_key

from opd_tui import actions
from opd_tui.app import make_app
from opd_tui.cli import DEMO
from opd_tui.screens.rollout import RolloutScreen

PROFILES = {"ci": (200, 0, 20), "long": (100, 100, 100)}  # examples, min and max events
EXAMPLES, MIN_EVENTS, MAX_EVENTS = PROFILES[os.environ.get("OPD_TUI_KEYS", "ci")]

REGISTERED = sorted({k for a in actions.ACTIONS for k in a.keys.split(",")})
EXTRA = ["escape", "enter", "tab", "shift+tab", "backspace", "space", "up", "down", "left",
         "right", "home", "end", "pageup", "pagedown", "delete"]
CTRL = [f"ctrl+{c}" for c in string.ascii_lowercase if c not in "q"]  # ctrl+q is in REGISTERED
PRINTABLE = [_character_to_key(c) for c in string.printable if c not in "\t\n\r\x0b\x0c"]

key = st.sampled_from(REGISTERED + EXTRA + CTRL + PRINTABLE)
event = st.one_of(
    key.map(lambda k: ("key", k)),
    key.map(lambda k: ("key", k)),  # keys twice as likely as the rest
    st.just(("pause", None)),
    st.tuples(st.integers(20, 160), st.integers(8, 50)).map(lambda wh: ("resize", wh)),
)

STARTS = {  # where a sequence begins, so the deep screens get their share of random keys
    "overview": [],
    "rollouts": [("key", "enter"), ("pause", None)] * 2,
    "rollout": [("key", "enter"), ("pause", None)] * 3,
    "console": [("key", "colon"), ("pause", None)],
}


WORKER_TIMEOUT = 60.0
"""Seconds a pause waits for the app's workers: a hang fails the property instead of stalling
the run (the slowest demo query takes well under a second)."""


async def workers_done(app: object) -> None:
    try:
        await asyncio.wait_for(app.workers.wait_for_complete(),  # type: ignore[attr-defined]
                               WORKER_TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"the app's workers were still running after {WORKER_TIMEOUT:g} s: "
                             "a hang") from None


async def drive(events: list[tuple[str, object]], size: tuple[int, int]) -> list[str]:
    """Play `events` on a fresh app; return the screens visited. Raises what the app raised."""
    app = make_app(DEMO)
    visited: list[str] = []
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        for kind, arg in events:
            if not app.is_running:
                break  # a quit key ended the session: the rest is moot
            if kind == "key":
                await pilot.press(str(arg))
            elif kind == "pause":
                await workers_done(app)
                await pilot.pause()
            else:
                await pilot.resize_terminal(*arg)  # type: ignore[misc]
                await pilot.pause()
            visited.append(type(app.screen).__name__)
        if app.is_running:
            await workers_done(app)
            await pilot.pause()
    return visited


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(start=st.sampled_from(sorted(STARTS)),
       events=st.lists(event, min_size=MIN_EVENTS, max_size=MAX_EVENTS),
       no_color=st.booleans(), size=st.sampled_from([(80, 24), (100, 30), (60, 15)]))
def test_random_keys_never_crash(start: str, events: list[tuple[str, object]], no_color: bool,
                                 size: tuple[int, int], tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    scratch = tmp_path_factory.mktemp("keys")
    saved = {k: os.environ.get(k) for k in ("NO_COLOR", "OPD_TUI_EXPORT_DIR", "XDG_DATA_HOME")}
    os.environ["OPD_TUI_EXPORT_DIR"] = str(scratch / "exports")
    os.environ["XDG_DATA_HOME"] = str(scratch / "data")
    if no_color:
        os.environ["NO_COLOR"] = "1"
    else:
        os.environ.pop("NO_COLOR", None)
    try:
        visited = asyncio.run(drive(STARTS[start] + events, size))
        for screen in set(visited):
            hypothesis.event(f"visited {screen}")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_the_driver_reaches_the_deep_screens_and_sees_crashes(tmp_path: Path,
                                                             monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The property is only as good as its driver: it must get to the token view, and an
    exception raised in a handler there must fail it (not be swallowed)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    path = [("key", "enter"), ("pause", None)] * 3  # overview, questions, rollouts, rollout
    assert "RolloutScreen" in asyncio.run(drive(path, (100, 30)))

    def boom(self: RolloutScreen, step: int) -> None:
        raise RuntimeError("planted")

    monkeypatch.setattr(RolloutScreen, "action_move", boom)
    try:
        asyncio.run(drive(path + [("key", "right")], (100, 30)))
    except RuntimeError as e:
        assert "planted" in str(e)
    else:
        raise AssertionError("a crash in a key handler went unnoticed")
