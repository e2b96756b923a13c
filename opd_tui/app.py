"""The browsing app: holds the open run and the selection (teacher, signal); screens do the rest.

`make_app(path)` is the one factory used by the CLI, the tests and the benchmark.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from textual.app import App, SystemCommand
from textual.markup import escape
from textual.screen import Screen

from opd_tui import actions
from opd_tui.queries import Run, RunInfo, rollout_keys_query, run_info
from opd_tui.screens.base import OpdScreen
from opd_tui.screens.modals import TextModal, help_body


class OpdApp(App[None]):
    TITLE = "opd-tui"
    BINDINGS = actions.bindings("app")
    ENABLE_COMMAND_PALETTE = True

    def __init__(self, run: Run, info: RunInfo, *, start: tuple[str, int, int] | None = None):
        super().__init__()
        self.db, self.info, self.start = run, info, start
        self.teacher = (info.non_control or info.teacher_names or ["?"])[0]
        self.signal = "rkl" if "rkl" in info.signals else info.signals[0]
        self._rollout_keys: list[tuple[str, int]] | None = None

    def on_mount(self) -> None:
        from opd_tui.screens.overview import OverviewScreen

        self.push_screen(OverviewScreen())
        if self.start is not None:
            self.open_token(*self.start)

    # -- navigation API (used by screens and by the SQL console) --------------------------

    def open_questions(self) -> None:
        from opd_tui.screens.questions import QuestionsScreen

        self.push_screen(QuestionsScreen())

    def open_rollout(self, question_id: str, rollout: int, pos: int = 0,
                     search: str = "") -> None:
        from opd_tui.screens.rollout import RolloutScreen

        self.push_screen(RolloutScreen(question_id, rollout, pos, search=search))

    def open_token(self, question_id: str, rollout: int, pos: int, search: str = "") -> None:
        """Jump to one token of one rollout (e.g. from a console result row); `search` sets the
        rollout's search text, so n / N step through its matches."""
        self.open_rollout(question_id, rollout, pos, search)

    def step_rollout(self, question_id: str, rollout: int, delta: int) -> tuple[str, int] | None:
        if self._rollout_keys is None:
            cur = self.db.cursor()
            try:
                rows = cur.execute(rollout_keys_query().sql).fetchall()
            finally:
                cur.close()
            self._rollout_keys = [(str(q), int(r)) for q, r in rows]
        keys = self._rollout_keys
        order = self._question_order()
        if order is not None and question_id in order:  # follow the Questions list as shown
            rank = {q: i for i, q in enumerate(order)}
            keys = sorted((k for k in keys if k[0] in rank), key=lambda k: (rank[k[0]], k[1]))
        try:
            i = keys.index((question_id, rollout)) + delta
        except ValueError:
            return None
        return keys[i] if 0 <= i < len(keys) else None

    def _question_order(self) -> list[str] | None:
        """Question ids in the Questions screen's current filter and sort order, if it is open:
        `]` / `[` then step through the questions the user is looking at."""
        from opd_tui.screens.questions import QuestionsScreen

        screen = next((s for s in self.screen_stack if isinstance(s, QuestionsScreen)), None)
        if screen is None:
            return None
        cur = self.db.cursor()
        try:
            return screen.ordered_ids(cur)
        finally:
            cur.close()

    # -- app-wide actions -----------------------------------------------------------------

    @property
    def browsing(self) -> OpdScreen | None:
        screen = self.screen
        return screen if isinstance(screen, OpdScreen) else None

    def action_back(self) -> None:
        """q: back one screen; on the Overview, quit."""
        if not self._close_or_pop():
            self.exit()

    def action_escape(self) -> None:
        """Esc: back one screen, never out of the app (Esc-Esc-Esc out of the console used to
        quit): on the Overview it only says how to quit."""
        if not self._close_or_pop():
            self.notify("q quits (Esc never does)", timeout=3)

    def _close_or_pop(self) -> bool:
        """Close the screen's overlay or pop the screen; False at the root."""
        closer = getattr(self.screen, "close_overlay", None)
        if closer is not None and closer():
            return True
        if len(self.screen_stack) > 2:
            self.pop_screen()
            return True
        return False

    def action_help(self) -> None:
        screen = self.screen
        scope = getattr(screen, "scope", "app")
        text = getattr(screen, "HELP", "")
        self.push_screen(TextModal(f"help: {scope}", help_body(scope, text)))

    def _sql(self) -> str:
        screen = self.browsing
        if screen is None or not screen.queries:
            return ""
        return "\n\n".join(q.inline() for q in screen.queries)

    def action_show_sql(self) -> None:
        sql = self._sql()
        if not sql:
            self.notify("this view has no SQL yet", timeout=2)
            return
        self.push_screen(TextModal("the SQL behind this view", sql, sql))

    def action_copy_sql(self) -> None:
        sql = self._sql()
        if sql:
            from opd_tui.clipboard import copy

            copy(self, sql, "SQL")

    def action_reload(self) -> None:
        self.db.reopen()
        cur = self.db.cursor()
        try:
            self.info = run_info(cur)
        finally:
            cur.close()
        self._rollout_keys = None
        for screen in self.screen_stack:
            if isinstance(screen, OpdScreen):
                screen.reload()
        self.notify("reloaded", timeout=1)

    def _selection_changed(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, OpdScreen) and screen is self.screen:
                screen.selection_changed()
            elif isinstance(screen, OpdScreen):
                screen.call_later(screen.selection_changed)

    def action_next_teacher(self) -> None:
        names = self.info.teacher_names
        if names:
            self.teacher = names[(names.index(self.teacher) + 1) % len(names)]
            self._selection_changed()

    def action_pick_teacher(self, number: int) -> None:
        names = self.info.teacher_names
        if 1 <= number <= len(names):
            self.teacher = names[number - 1]
            self._selection_changed()
        else:
            self.notify(f"no teacher {number}: there are {len(names)}", timeout=2)

    def action_next_signal(self) -> None:
        signals = self.info.signals
        self.signal = signals[(signals.index(self.signal) + 1) % len(signals)]
        self._selection_changed()

    def action_open_screen(self, action_id: str) -> None:
        target = actions.by_id(action_id).screen or ""
        module, _, name = target.partition(":")
        screen_class = getattr(importlib.import_module(module), name)
        self.push_screen(screen_class())

    # -- command palette: generated from the registry -------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        scope = getattr(screen, "scope", "app")
        for a in actions.for_scope(scope):
            if a.id == "app.palette":
                continue
            action = a.textual_action.replace("{key}", a.keys.split(",")[0])
            yield SystemCommand(  # the palette parses titles as markup: "[/]" must be escaped
                escape(f"{a.description}  [{a.key_label}]"), a.id,
                partial(self.call_later, self.run_action, action, screen),
            )


def make_app(path: str | Path, *, start: tuple[str, int, int] | None = None) -> OpdApp:
    """Open `path` read-only (raises `OpenError` with a user-facing message) and build the app."""
    run = Run(path)
    cur = run.cursor()
    try:
        info = run_info(cur)
    finally:
        cur.close()
    return OpdApp(run, info, start=start)
