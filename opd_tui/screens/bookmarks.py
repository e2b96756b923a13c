"""Bookmarks of the open run: tokens marked with `m` on the Rollout screen, kept across sessions
in the user's data directory (see `opd_tui.bookmarks`)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable, Static

from opd_tui import actions
from opd_tui.bookmarks import Bookmark, BookmarkError, BookmarkStore
from opd_tui.render import safe_text, visible_token
from opd_tui.screens.base import OpdScreen


class BookmarksScreen(OpdScreen):
    scope = "bookmarks"
    BINDINGS = actions.bindings("bookmarks")
    HELP = ("The tokens bookmarked in this run file (m on the Rollout screen toggles one), by "
            "question, rollout and position, with the token's text and when it was added. Enter "
            "jumps to the token, d deletes the bookmark. Bookmarks live in the user's data "
            "directory (bookmarks.json), keyed by the run file's path; the run is never written.")
    DEFAULT_CSS = """
    BookmarksScreen #summary { height: auto; max-height: 2; }
    BookmarksScreen DataTable { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[Bookmark] = []
        self.store = BookmarkStore()

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(id="summary")
        yield DataTable(id="marks", cursor_type="row", zebra_stripes=True)
        yield from self.compose_chrome()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.refresh_marks()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self.query(DataTable):  # back from a rollout where m may have changed them
            self.refresh_marks()

    def _warn(self) -> None:
        if self.store.warning:
            self.notify(self.store.warning, severity="warning", timeout=8)

    def refresh_marks(self) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        try:
            marks, error = self.store.for_run(self.opd.db.path), ""
        except BookmarkError as e:
            marks, error = [], str(e)
        self._warn()
        if marks == self.marks and table.columns and not error:
            return  # unchanged: keep the table (and the cursor) as it is
        self.marks = marks
        table.clear(columns=True)
        for name in ("question", "rollout", "pos", "token", "added"):
            table.add_column(name, key=name)
        for b in self.marks:
            table.add_row(safe_text(b.question_id, 40), Text(str(b.rollout), justify="right"),
                          Text(str(b.pos), justify="right"), visible_token(b.token_text),
                          Text(b.added, "dim"))
        if self.marks:
            table.move_cursor(row=min(row, len(self.marks) - 1))
        summary = (Text(error, "red") if error else
                   Text(f"{len(self.marks)} bookmark{'s' * (len(self.marks) != 1)} in "
                        f"{safe_text(self.opd.db.path.name)}")
                   if self.marks else Text("no bookmarks in this run yet: m on a token of the "
                                           "Rollout screen adds one", "bold"))
        self.query_one("#summary", Static).update(summary)
        self.update_status(f"{len(self.marks)} bookmarks")

    def selected(self) -> Bookmark | None:
        row = self.query_one(DataTable).cursor_row
        return self.marks[row] if 0 <= row < len(self.marks) else None

    def action_open_mark(self) -> None:
        mark = self.selected()
        if mark is not None:
            self.opd.open_token(mark.question_id, mark.rollout, mark.pos)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_mark()

    def action_delete_mark(self) -> None:
        mark = self.selected()
        if mark is None:
            self.notify("no bookmark to delete", timeout=2)
            return
        try:
            removed = self.store.remove(self.opd.db.path, *mark.key)
        except BookmarkError as e:
            self.notify(str(e), severity="error", timeout=6)
            removed = False
        self._warn()
        if removed:
            self.notify(f"bookmark removed: {mark.question_id} r{mark.rollout} pos {mark.pos}",
                        timeout=2)
        self.refresh_marks()

    def action_cursor(self, rows: int) -> None:
        table = self.query_one(DataTable)
        table.move_cursor(row=table.cursor_row + rows)
