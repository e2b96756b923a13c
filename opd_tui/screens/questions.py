"""Questions: one row per question, sortable by any column, filtered by a typed SQL WHERE.

Rows arrive a page at a time: the first page on open, the next when the cursor reaches the last
loaded row (or `G`), appended without touching the rows already in the table.
"""

from __future__ import annotations

import duckdb
import polars as pl
from rich.text import Text
from textual.widgets import DataTable, Input, Static

from opd_tui import actions
from opd_tui.queries import Query, QueryError, fetch_questions, questions_query
from opd_tui.render import fmt, safe_text, visible_token
from opd_tui.screens.base import OpdScreen

PAGE = 1000


class QuestionsScreen(OpdScreen):
    scope = "questions"
    BINDINGS = actions.bindings("questions")
    HELP = ("One row per question: accuracy over its rollouts, n_decisive (decisive nodes: "
            "stakes >= tau), and per teacher, for the selected signal, edge_<teacher> (mean edge "
            "over the question's decisive nodes: alignment beyond what sharpening alone earns, "
            "in [-2, 2]) and hurts_<teacher> (that teacher's nodes labelled hurts; controls have "
            "an edge column only, the baseline), the best teacher (highest mean edge at decisive "
            "nodes) and the question text (the cursor row's in full below the table). o sorts by "
            "the cursor's column (again: descending). f or / focuses the filter: a DuckDB "
            "expression over the columns, e.g. accuracy < 0.5 AND hurts_strong > 3; Enter "
            "applies it, errors show below it. Enter on a row opens its rollouts.")
    DEFAULT_CSS = """
    QuestionsScreen #filter { height: 3; }
    QuestionsScreen #filter-error { height: auto; color: $error; }
    QuestionsScreen #question-text { height: auto; max-height: 2; color: $text-muted; }
    QuestionsScreen DataTable { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.where = ""
        self.order_by = "idx"
        self.descending = False
        self.frame = pl.DataFrame()
        self.more = False
        """The last page was full: another may follow."""
        self._order_cache: tuple[tuple[object, ...], list[str]] | None = None

    def compose(self):  # type: ignore[no-untyped-def]
        yield Input(placeholder="filter: DuckDB WHERE expression (f), e.g. accuracy < 0.5",
                    id="filter")
        yield Static("", id="filter-error")
        yield DataTable(id="questions", cursor_type="cell", zebra_stripes=True)
        yield Static("", id="question-text")
        yield from self.compose_chrome()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.selection_changed()

    def selection_changed(self) -> None:
        super().selection_changed()
        self.refetch()

    def _query(self, offset: int, limit: int | None = None) -> Query:
        app = self.opd
        controls = [t["teacher"] for t in app.info.teachers if t["is_control"]]
        return questions_query(app.info.teacher_names, app.signal, controls=controls,
                               where=self.where, order_by=self.order_by,
                               descending=self.descending, limit=limit or PAGE, offset=offset,
                               summary=not app.db.live)

    def ordered_ids(self, cur: duckdb.DuckDBPyConnection) -> list[str]:
        """Every question id the current filter keeps, in the current sort order (all pages):
        the order `]` / `[` step through on the Rollout screen. Cached per filter and sort."""
        key = (self.where, self.order_by, self.descending, self.opd.signal)
        if self._order_cache is None or self._order_cache[0] != key:
            try:
                q = self._query(0, limit=2**62)
                ids = [str(r[0]) for r in cur.execute(
                    f"SELECT question_id FROM ({q.sql})", list(q.params)).fetchall()]
            except (QueryError, duckdb.Error):  # a bad filter: the list shows the error
                return []
            self._order_cache = (key, ids)
        return self._order_cache[1]

    def refetch(self, focus_table: bool = False) -> None:
        """Sort, filter or selection changed: reload from the first page."""
        error = self.query_one("#filter-error", Static)

        def failed(message: str) -> None:
            error.update(Text(message))
            self.query_one("#filter", Input).focus()

        try:
            query = self._query(0)
        except QueryError as e:
            failed(str(e))
            return

        def shown(frame: pl.DataFrame) -> None:
            self._show(frame)
            if focus_table:
                self.query_one(DataTable).focus()

        self.queries = [query]
        self.load("questions", lambda cur: fetch_questions(cur, query), shown,
                  lambda e: failed(f"filter error: {e}"))

    def action_cursor(self, rows: int, columns: int) -> None:
        """hjkl as the arrows."""
        table = self.query_one(DataTable)
        c = table.cursor_coordinate
        table.cursor_coordinate = table.validate_cursor_coordinate(
            c._replace(row=c.row + rows, column=c.column + columns))

    def next_page(self) -> None:
        """Append the next page (no-op while one is loading or when none is left)."""
        if not self.more:
            return
        self.more = False  # one request at a time
        query = self._query(self.frame.height)
        self.load("questions", lambda cur: fetch_questions(cur, query), self._append)

    def _show(self, frame: pl.DataFrame) -> None:
        self.query_one("#filter-error", Static).update("")
        table = self.query_one(DataTable)
        cursor = table.cursor_coordinate
        table.clear(columns=True)
        for name in frame.columns:
            arrow = ""
            if name == self.order_by:
                arrow = " ▼" if self.descending else " ▲"
            table.add_column(name + arrow, key=name)
        self.frame = frame.clear()
        self._append(frame)
        if frame.height:
            table.cursor_coordinate = table.validate_cursor_coordinate(cursor)
        self._show_question_text(table.cursor_coordinate.row)

    def _append(self, page: pl.DataFrame) -> None:
        self.frame = pl.concat([self.frame, page]) if self.frame.width else page
        self.query_one(DataTable).add_rows([tuple(_cell(v) for v in row)
                                            for row in page.iter_rows()])
        self.more = page.height >= PAGE
        note = f"{self.frame.height:,} rows" + (" (more below)" if self.more else "")
        self.update_status(note)

    def on_data_table_cell_highlighted(self, event: DataTable.CellHighlighted) -> None:
        self._show_question_text(event.coordinate.row)
        if event.coordinate.row >= self.frame.height - 1:
            self.next_page()

    def _show_question_text(self, row: int) -> None:
        """The cursor row's question in full (the column is cut to 32 cells)."""
        text = Text()
        if 0 <= row < self.frame.height and "question" in self.frame.columns:
            text.append(f"{self.frame['question_id'][row]}: ", "bold")
            text.append(safe_text(self.frame["question"][row], 400).replace("\n", " ⏎ "))
        self.query_one("#question-text", Static).update(text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Apply the filter; the table takes focus only once it ran, so a correction typed
        after an error goes into the input, not to the screen's keys."""
        self.where = event.value.strip()
        self.refetch(focus_table=True)

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_sort(self) -> None:
        table = self.query_one(DataTable)
        if not self.frame.width:
            return
        column = self.frame.columns[table.cursor_coordinate.column]
        self.descending = not self.descending if column == self.order_by else False
        self.order_by = column
        self.refetch()

    def action_first(self) -> None:
        self.query_one(DataTable).move_cursor(row=0)

    def action_last(self) -> None:
        table = self.query_one(DataTable)
        table.move_cursor(row=max(table.row_count - 1, 0))

    def selected_question(self) -> str | None:
        table = self.query_one(DataTable)
        if not self.frame.height:
            return None
        return str(self.frame["question_id"][table.cursor_coordinate.row])

    def action_open_question(self) -> None:
        question = self.selected_question()
        if question is not None:
            from opd_tui.screens.rollouts import RolloutsScreen

            self.opd.push_screen(RolloutsScreen(question))

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        event.stop()
        self.action_open_question()


def _cell(value: object) -> Text | str:
    if value is None:
        return Text("∅", "dim")
    if isinstance(value, float):
        return Text(fmt(value, 3, signed=False) if value >= 0 else fmt(value, 3),
                    justify="right")
    if isinstance(value, int):
        return Text(str(value), justify="right")
    return visible_token(str(value), max_cells=32)
