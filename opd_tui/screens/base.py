"""Base screen: the status line, the footer, the SQL behind the view, and worker plumbing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from textual.screen import Screen
from textual.widgets import Footer

from opd_tui.queries import Query
from opd_tui.widgets.status import StatusLine

if TYPE_CHECKING:
    from opd_tui.app import OpdApp

T = TypeVar("T")


class OpdScreen(Screen[None]):
    """A browsing screen. Subclasses set `scope` (the action registry scope) and `HELP`."""

    scope = "app"
    HELP = ""

    def __init__(self) -> None:
        super().__init__()
        self._generation: dict[str, int] = {}
        self.queries: list[Query] = []
        """The queries behind what the screen shows, for "show the SQL"."""

    @property
    def opd(self) -> OpdApp:
        return self.app  # type: ignore[return-value]

    def compose_chrome(self):  # type: ignore[no-untyped-def]
        yield StatusLine()
        yield Footer()

    def on_screen_resume(self) -> None:
        self.update_status()

    def layer_name(self) -> str:
        return ""

    def update_status(self, note: str = "") -> None:
        for status in self.query(StatusLine):
            app = self.opd
            status.show(file=app.db.path.name, live=app.db.live, counts=app.info.counts,
                        teacher=app.teacher, signal=app.signal, layer=self.layer_name(),
                        note=note)

    def selection_changed(self) -> None:
        """The app's teacher or signal changed: reload what depends on them."""
        self.update_status()

    def reload(self) -> None:
        """The run was reopened (live refresh): reload everything."""
        self.selection_changed()

    def load(self, group: str, fetch: Callable[[Any], T], apply: Callable[[T], None],
             on_error: Callable[[Exception], None] | None = None) -> None:
        """Run `fetch(cursor)` in a worker thread, then `apply(result)` on the UI thread.

        Only the latest load of a group is applied: an older result arriving late is dropped.
        """
        generation = self._generation.get(group, 0) + 1
        self._generation[group] = generation

        def work() -> None:
            cur = self.opd.db.cursor()
            try:
                result = fetch(cur)
            except Exception as e:  # shown to the user, never a traceback
                if on_error is not None and self._generation.get(group) == generation:
                    self.app.call_from_thread(on_error, e)
                return
            finally:
                cur.close()
            if self._generation.get(group) == generation:
                self.app.call_from_thread(self._apply, group, generation, apply, result)

        self.run_worker(work, thread=True, group=group, exclusive=True, exit_on_error=False)

    def _apply(self, group: str, generation: int, apply: Callable[[T], None], result: T) -> None:
        if self._generation.get(group) == generation and self.is_attached:
            apply(result)
