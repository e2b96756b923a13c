"""The SQL console screen: editor, status line and streaming results grid over the sandbox.

Threading follows the app's rule: workers run DuckDB and never touch widgets; they post messages
and the handlers here update state. Every query carries a generation number so a result that
arrives after a newer run (or a cancel) is dropped.

Sort, filter and plots never work on the rows the grid happens to hold: they wrap the last
statement the user ran as a subquery and let DuckDB read the whole result again. Every key is a
registry action (scope "console"), so help and the palette list the grid's keys too.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, TextArea

from engine.runfile.sql import sql_ident
from opd_tui import actions
from opd_tui.actions import Action
from opd_tui.clipboard import copy
from opd_tui.console.dialogs import CellDetail, ExportDialog, PlotDialog, PresetMenu
from opd_tui.console.grid import ResultsGrid, format_cell
from opd_tui.console.plot import PlotData, PlotRequest, PlotScreen, compute_plot, wrap
from opd_tui.sql.export import export_query
from opd_tui.sql.history import History
from opd_tui.sql.presets import PRESET_BY_ID
from opd_tui.sql.sandbox import Sandbox, SandboxError, describe_error, open_sandbox
from opd_tui.sql.statements import RefusedStatement, error_position, split_statements
from opd_tui.sql.stream import DEFAULT_ROW_LIMIT, RowWindow, start_query

FIRST_PAGE_ROWS = 256
MEMORY_LIMIT = "512MB"
"""DuckDB's buffer pool cap inside the TUI: a big sort or join spills to disk instead of growing
the process while the user scrolls."""
EXPORT_DIR_ENV = "OPD_TUI_EXPORT_DIR"

CONSOLE_ACTIONS = (
    Action("console.run", "ctrl+j,f5,ctrl+enter", "Run query", "console", "run_query"),
    # ctrl+c cancels from the grid; in the editor TextArea keeps it for copy (Esc works in both)
    # shown in the footer: short; HELP says that Esc also cancels a plot and closes the filter
    Action("console.cancel", "escape,ctrl+c", "Cancel query (idle: back)", "console",
           "cancel_or_back"),
    Action("console.presets", "f2", "Preset queries", "console", "presets"),
    Action("console.plot", "f3", "Plot result", "console", "plot"),
    Action("console.export", "f8", "Export result", "console", "export"),
    Action("console.focus", "f4", "Editor / results", "console", "toggle_focus"),
    Action("console.clear", "ctrl+l", "Clear the SQL editor (history kept, ctrl+z undoes)",
           "console", "clear_editor", show=False),
    # the results grid (keys the editor types or uses itself never reach these)
    Action("console.sort", "o", "Sort the whole result by the cursor column (again: flip)",
           "console", "sort", show=False),
    Action("console.filter", "f,slash", "Filter the whole result (DuckDB WHERE expression)",
           "console", "filter", show=False),
    Action("console.inspect", "i", "Whole cell value and row", "console", "inspect",
           show=False),
    Action("console.open_row", "enter", "Open the row's token (question_id, rollout, pos)",
           "console", "open_row", show=False),
    Action("console.copy_cell", "y", "Copy cell (OSC 52)", "console", "copy_cell", show=False),
    Action("console.copy_row", "Y", "Copy row as TSV (OSC 52)", "console", "copy_row",
           show=False),
    Action("console.row_down", "down,j", "Row down", "console", "grid_move(1, 0)", show=False),
    Action("console.row_up", "up,k", "Row up", "console", "grid_move(-1, 0)", show=False),
    Action("console.col_left", "left,h", "Column left", "console", "grid_move(0, -1)",
           show=False),
    Action("console.col_right", "right,l", "Column right", "console", "grid_move(0, 1)",
           show=False),
    Action("console.page_down", "pagedown", "Page down", "console", "grid_page(1)", show=False),
    Action("console.page_up", "pageup", "Page up", "console", "grid_page(-1)", show=False),
    Action("console.first_row", "home,g", "First row", "console", "grid_move(-1e12, 0)",
           show=False),
    Action("console.last_row", "end,G", "Last fetched row (fetches more)", "console",
           "grid_move(1e12, 0)", show=False),
    Action("console.history_prev", "ctrl+up", "Previous query from history", "console",
           "history(-1)", show=False),
    Action("console.history_next", "ctrl+down", "Next query from history", "console",
           "history(1)", show=False),
)
for _action in CONSOLE_ACTIONS:
    if not any(a.id == _action.id for a in actions.ACTIONS):
        actions.register(_action)


class JumpToToken(Message):
    """Posted when the host app has no `open_token(question_id, rollout, pos)` method."""

    def __init__(self, question_id: str, rollout: int, pos: int) -> None:
        super().__init__()
        self.question_id, self.rollout, self.pos = question_id, rollout, pos


class QueryReady(Message):
    def __init__(self, generation: int, window: RowWindow, seconds: float) -> None:
        super().__init__()
        self.generation, self.window, self.seconds = generation, window, seconds


class QueryFailed(Message):
    def __init__(self, generation: int, text: str, sql: str, *, fetch: bool = False) -> None:
        super().__init__()
        self.generation, self.text, self.sql = generation, text, sql
        self.fetch = fetch
        """Fetching more rows of the shown result failed (not the run in flight, if any)."""


class RowsFetched(Message):
    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation


class PlotReady(Message):
    def __init__(self, generation: int, data: PlotData) -> None:
        super().__init__()
        self.generation, self.data = generation, data


class PlotFailed(Message):
    def __init__(self, generation: int, text: str) -> None:
        super().__init__()
        self.generation, self.text = generation, text


@dataclass(frozen=True)
class View:
    """How the grid shows the user's last SELECT: an optional WHERE and ORDER BY over it."""

    base: str
    where: str | None = None
    order: tuple[str, bool] | None = None
    """(column, descending)."""

    @property
    def sql(self) -> str:
        return view_sql(self.base, self.where, self.order)

    def describe(self) -> str:
        parts = []
        if self.order is not None:
            parts.append(f"sorted by {self.order[0]} {'▼ desc' if self.order[1] else '▲ asc'}")
        if self.where is not None:
            parts.append(f"where {' '.join(self.where.split())}")
        return " · ".join(parts)


def view_sql(base: str, where: str | None, order: tuple[str, bool] | None) -> str:
    """`base` as a subquery, filtered and sorted; `where` is parenthesised on its own lines so
    its `OR` and `--` cannot reach the rest."""
    sql = f"SELECT * FROM {wrap(base)}"
    if where is not None:
        sql += f"\nWHERE (\n{where}\n)"
    if order is not None:
        sql += f"\nORDER BY {sql_ident(order[0])} {'DESC' if order[1] else 'ASC'} NULLS LAST"
    return sql


class ConsoleScreen(Screen[None]):
    """Ad-hoc SQL over the run: read-only, fenced, streamed, cancellable."""

    scope = "console"
    HELP = ("SQL over the run (read-only). ctrl+j / F5 runs the editor, Esc or ctrl+c cancels, "
            "ctrl+l clears the editor (history keeps every query run: ctrl+up). In the results "
            "(F4): hjkl or arrows move, o sorts and f or / filters the WHOLE result (not only "
            "the rows on screen), i shows a whole cell and its row, y / Y copy, Enter on a row "
            "with question_id, rollout, pos opens that token. F3 plots the whole result "
            "(histogram, scatter, mean by position). Esc also cancels a plot and closes the "
            "filter.")
    BINDINGS = actions.bindings("console")
    DEFAULT_CSS = """
    ConsoleScreen #editor { height: 40%; }
    ConsoleScreen #console-status { height: 3; padding: 0 1; }
    ConsoleScreen #console-status.error { color: $error; }
    ConsoleScreen #filter-bar { height: auto; display: none; padding: 0 1; }
    ConsoleScreen #filter-bar.open { display: block; }
    ConsoleScreen #filter-error { color: $error; height: auto; }
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 export_dir: str | os.PathLike[str] | None = None,
                 row_limit: int = DEFAULT_ROW_LIMIT, history: History | None = None) -> None:
        super().__init__()
        self._path = Path(path) if path is not None else None
        self._export_dir = export_dir
        self.row_limit = row_limit
        self.history = history or History.load()
        self.sandbox: Sandbox | None = None
        self.generation = 0
        self.running = False
        self.window: RowWindow | None = None
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._fetching = False
        self._want: tuple[int, int] | None = None
        self.last_error: str | None = None
        self.view: View | None = None
        """The shown result's base SELECT and its sort/filter; None for non-SELECT results."""
        self._pending_view: tuple[int, View | None] | None = None
        """(generation, view) of the run in flight: the view is committed only if it succeeds."""
        self._plot_cursor: duckdb.DuckDBPyConnection | None = None
        self.plot_generation = 0

    def compose(self) -> ComposeResult:
        try:
            editor = TextArea.code_editor("", language="sql", id="editor")
        except Exception:  # noqa: BLE001 - no tree-sitter grammar: plain editor, still usable
            editor = TextArea.code_editor("", id="editor")
        yield editor
        hint = ("Type SQL and press ctrl+j or F5.  F2 presets · F4 results · F3 plot · F8 export"
                " · ctrl+l clear · ? help")
        yield Static(hint, id="console-status")
        with Vertical(id="filter-bar"):
            yield Input(placeholder="DuckDB WHERE over the result's columns, e.g. value > 0.5 "
                        "(Enter applies, empty clears, Esc closes)", id="filter")
            yield Static("", id="filter-error")
        yield ResultsGrid(id="grid")
        yield Footer()

    def on_mount(self) -> None:
        path = self._path if self._path is not None else self.app.db.path  # type: ignore[attr-defined]
        export_dir = self._export_dir or os.environ.get(EXPORT_DIR_ENV)
        try:  # the app checked the schema when it opened the run
            self.sandbox = open_sandbox(path, export_dir, memory_limit=MEMORY_LIMIT,
                                        schema_check=False)
        except (duckdb.Error, OSError, SandboxError) as e:
            self._status(f"cannot open {path} for the console: {e}", error=True)
        self.query_one("#editor", TextArea).focus()

    def on_unmount(self) -> None:
        for cursor in (self._cursor, self._plot_cursor):
            if cursor is not None:
                with contextlib.suppress(duckdb.Error):  # a plot's cursor may be closed already
                    cursor.interrupt()
        if self.sandbox is not None:
            # a worker may still be unwinding from the interrupt; the GC closes it later then
            with contextlib.suppress(duckdb.Error):
                self.sandbox.close()

    # -- running --------------------------------------------------------------------------------

    def run_sql(self, sql: str) -> None:
        """Start `sql` (also used by tests and presets): interrupts a running query first."""
        if self.sandbox is None:
            return
        self._interrupt()
        self.history.add(sql)
        self._start(sql, None, "running… (Esc / ctrl+c cancels)")

    def _start(self, sql: str, view: View | None, status: str) -> None:
        """Run `sql` on a fresh cursor; `view` is set for a sort/filter over the current base
        (None: the editor's own SQL, whose last SELECT becomes the new base)."""
        assert self.sandbox is not None
        self.generation += 1
        self._pending_view = (self.generation, view)
        self.running = True
        self.last_error = None
        self._cursor = self.sandbox.cursor()
        self._status(status)
        self._execute(sql, self.generation, self._cursor)

    def action_run_query(self) -> None:
        self.run_sql(self.query_one("#editor", TextArea).text)

    @work(thread=True, group="console-query", exit_on_error=False)
    def _execute(self, sql: str, generation: int, cursor: duckdb.DuckDBPyConnection) -> None:
        assert self.sandbox is not None
        started = time.perf_counter()
        try:
            stream = start_query(self.sandbox, sql, row_limit=self.row_limit, cursor=cursor)
            window = RowWindow(self.sandbox, stream)
            window.ensure(0, FIRST_PAGE_ROWS)
        except (RefusedStatement, duckdb.Error, RuntimeError) as e:
            self.post_message(QueryFailed(generation, _describe(e), sql))
            return
        self.post_message(QueryReady(generation, window, time.perf_counter() - started))

    @on(QueryReady)
    def _ready(self, message: QueryReady) -> None:
        if message.generation != self.generation:
            message.window.stream.close()
            return
        self.running = False
        self.window = message.window
        view = self._take_pending_view(message.generation)
        statement = message.window.stream.statement
        if view is None:
            view = View(statement.sql) if statement.kind == "SELECT" else None
        self.view = view
        grid = self.query_one(ResultsGrid)
        names = message.window.column_names
        sort = None
        if view is not None and view.order is not None and view.order[0] in names:
            sort = (names.index(view.order[0]), view.order[1])
        grid.show(message.window, cursor_col=sort[0] if sort else 0, sort=sort)
        if self.query_one("#filter-bar").has_class("open"):  # a filter that worked: done
            self._close_filter_bar(focus_grid=self.query_one("#filter", Input).has_focus)
        self._status_rows(message.seconds)

    @on(QueryFailed)
    def _failed(self, message: QueryFailed) -> None:
        if message.generation != self.generation:
            return
        if message.fetch:  # the shown result failed to scroll on; a run in flight goes on
            self.last_error = message.text
            self._status(f"fetching more rows failed: {message.text}", error=True)
            return
        self.running = False
        self.last_error = message.text
        view = self._take_pending_view(message.generation)
        if view is not None:  # a sort or filter: positions point into SQL the user never typed
            self._status(f"{view.describe()} failed: {message.text}", error=True)
            if view.where is not None and self.query_one("#filter-bar").has_class("open"):
                self._filter_error(message.text)
            return
        where = error_position(message.text, message.sql)
        prefix = f"line {where.line}, column {where.column}: " if where else ""
        self._status(prefix + message.text, error=True)
        if where is not None:
            self.query_one("#editor", TextArea).cursor_location = (where.line - 1, where.column - 1)

    def _take_pending_view(self, generation: int) -> View | None:
        pending, self._pending_view = self._pending_view, None
        return pending[1] if pending is not None and pending[0] == generation else None

    def _interrupt(self) -> None:
        if self._cursor is not None:
            self._cursor.interrupt()

    def action_cancel_or_back(self) -> None:
        if self.running:
            self._interrupt()
            self.generation += 1  # whatever the worker posts now is stale
            self.running = False
            self._status("cancelled", error=True)
        elif self._plot_cursor is not None:
            with contextlib.suppress(duckdb.Error):  # the worker closes it when it finishes
                self._plot_cursor.interrupt()
            self._plot_cursor = None
            self.plot_generation += 1
            self._status("plot cancelled", error=True)
        elif self.close_overlay():
            return
        elif hasattr(self.app, "action_back") and len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def close_overlay(self) -> bool:
        """Close the filter bar if open (the app's Esc/q call this before popping the screen)."""
        if not self.query_one("#filter-bar").has_class("open"):
            return False
        self._close_filter_bar(focus_grid=True)
        return True

    # -- streaming more rows --------------------------------------------------------------------

    @on(ResultsGrid.NeedRows)
    def _need_rows(self, message: ResultsGrid.NeedRows) -> None:
        if self.window is None:
            return
        if self._fetching:
            self._want = (message.first, message.end)
            return
        self._fetching = True
        self._fetch(self.window, message.first, message.end, self.generation)

    @work(thread=True, group="console-fetch", exit_on_error=False)
    def _fetch(self, window: RowWindow, start: int, stop: int, generation: int) -> None:
        try:
            window.ensure(start, stop)
        except (duckdb.Error, RuntimeError) as e:
            self.post_message(QueryFailed(generation, _describe(e), "", fetch=True))
        self.post_message(RowsFetched(generation))

    @on(RowsFetched)
    def _rows_fetched(self, message: RowsFetched) -> None:
        self._fetching = False
        if message.generation != self.generation or self.window is None:
            return
        self.query_one(ResultsGrid).refresh_size()
        self._status_rows(None)
        if self._want is not None:
            start, stop = self._want
            self._want = None
            self._need_rows(ResultsGrid.NeedRows(start, stop))

    # -- rows: jump, copy -----------------------------------------------------------------------

    def action_grid_move(self, rows: float, cols: int) -> None:
        self.query_one(ResultsGrid).move_cursor(int(rows), int(cols))

    def action_grid_page(self, pages: int) -> None:
        grid = self.query_one(ResultsGrid)
        grid.move_cursor(pages * grid.page_rows, 0)

    def action_open_row(self) -> None:
        grid = self.query_one(ResultsGrid)
        if not grid.row_count:
            return
        key = grid.token_key(grid.cursor_row)
        if key is None:
            self._status("this result has no question_id, rollout, pos columns to jump to")
            return
        open_token = getattr(self.app, "open_token", None)
        if callable(open_token):
            open_token(*key)
        else:
            self.post_message(JumpToToken(*key))

    def _cursor_values(self) -> tuple[object, ...] | None:
        grid = self.query_one(ResultsGrid)
        if grid.window is None or not grid.row_count:
            return None
        values = grid.row_values(grid.cursor_row)
        if values is None:
            self._status("that row is not loaded yet: try again in a moment")
        return values

    def action_copy_cell(self) -> None:
        values = self._cursor_values()
        if values is not None:
            # whole value: the grid's 40-cell cut is for display only
            text = values[self.query_one(ResultsGrid).cursor_col]
            copy(self.app, text if isinstance(text, str) else format_cell(text), "cell")

    def action_copy_row(self) -> None:
        values = self._cursor_values()
        if values is not None:
            copy(self.app, "\t".join(format_cell(v) for v in values), "row as TSV")

    def action_inspect(self) -> None:
        """The whole value of the cursor's cell and its row: the grid cuts cells at 40 cells."""
        values = self._cursor_values()
        grid = self.query_one(ResultsGrid)
        if values is not None and grid.window is not None:
            self.app.push_screen(CellDetail(grid.window.schema, values, grid.cursor_col,
                                            grid.cursor_row))

    # -- sort and filter: the whole result, re-run as a subquery ----------------------------------

    def _view_or_say(self, what: str) -> View | None:
        if self.view is None:
            self._status(f"{what} needs the result of a SELECT: run one first (ctrl+j)")
        return self.view

    def action_sort(self) -> None:
        view = self._view_or_say("sorting")
        column = self.query_one(ResultsGrid).column_name
        if view is None or column is None:
            return
        desc = view.order == (column, False)  # the same column again: flip to descending
        self._run_view(replace(view, order=(column, desc)))

    def action_filter(self) -> None:
        view = self._view_or_say("filtering")
        if view is None:
            return
        self.query_one("#filter-bar").add_class("open")
        box = self.query_one("#filter", Input)
        box.value = view.where or ""
        self.query_one("#filter-error", Static).update("")
        box.focus()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.view is None:
            return
        where = event.value.strip() or None
        view = replace(self.view, where=where)
        try:  # parse now: a stray `;` or `)` is answered in the input, before anything runs
            statements = split_statements(view.sql)
        except duckdb.Error as e:
            self._filter_error(_describe(e))
            return
        if len(statements) != 1:
            self._filter_error("the filter must be one expression over the result's columns, "
                               "e.g. value > 0.5 AND pos < 10 (no ';')")
            return
        self.query_one("#filter-error", Static).update("")
        self._run_view(view)

    def _filter_error(self, text: str) -> None:
        """Say what is wrong under the input and keep the focus there, so the correction typed
        next edits the expression instead of running as commands."""
        self.query_one("#filter-error", Static).update(Text(text))
        self.query_one("#filter", Input).focus()

    def _close_filter_bar(self, *, focus_grid: bool) -> None:
        self.query_one("#filter-bar").remove_class("open")
        self.query_one("#filter-error", Static).update("")
        if focus_grid:
            self.query_one(ResultsGrid).focus()

    def _run_view(self, view: View) -> None:
        if self.sandbox is None:
            return
        if self.running:  # only a query in flight: the shown result's cursor keeps streaming,
            self._interrupt()  # so a sort or filter that fails leaves the grid usable
        self._start(view.sql, view, f"{view.describe() or 'unsorted, unfiltered'}: running "
                    "over the whole result… (Esc cancels)")

    # -- presets, history, export, plot ---------------------------------------------------------

    def action_presets(self) -> None:
        self.app.push_screen(PresetMenu(), self.load_preset)

    def load_preset(self, preset_id: str | None) -> None:
        if preset_id is not None:
            editor = self.query_one("#editor", TextArea)
            editor.text = PRESET_BY_ID[preset_id].sql
            editor.focus()
            self._status(f"preset '{PRESET_BY_ID[preset_id].title}': edit, then ctrl+j to run")

    def action_history(self, step: int) -> None:
        sql = self.history.previous() if step < 0 else self.history.next()
        if sql is not None:
            self.query_one("#editor", TextArea).text = sql

    def action_export(self) -> None:
        if self.sandbox is None or self.window is None:
            self._status("run a query first; export writes the full result of the last query")
            return
        self.app.push_screen(ExportDialog(str(self.sandbox.export_dir)), self._export_to)

    def _export_to(self, choice: tuple[str, str] | None) -> None:
        if choice is not None and self.window is not None:
            name, fmt = choice
            self._export(self.window.stream.statement.sql, name, fmt)

    @work(thread=True, group="console-export", exit_on_error=False)
    def _export(self, sql: str, name: str, fmt: str) -> None:
        assert self.sandbox is not None
        assert self.sandbox.export_dir is not None
        target = self.sandbox.export_dir / name
        try:
            rows = export_query(self.sandbox, sql, target, fmt)
        except (RefusedStatement, duckdb.Error, OSError, SandboxError) as e:
            self.app.call_from_thread(self._status, f"export failed: {_describe(e)}", error=True)
            return
        self.app.call_from_thread(self._status, f"exported {rows:,} rows to {target}")

    def action_plot(self) -> None:
        view = self._view_or_say("plotting")
        if view is None or self.window is None:
            return
        dialog = PlotDialog(self.window.schema, filtered=view.where is not None)
        if not dialog.kinds:
            self._status("nothing numeric to plot in this result")
            return
        self.app.push_screen(dialog, self._plot_chosen)

    def _plot_chosen(self, request: PlotRequest | None) -> None:
        if request is None or self.view is None or self.window is None or self.sandbox is None:
            return
        if self._plot_cursor is not None:
            with contextlib.suppress(duckdb.Error):
                self._plot_cursor.interrupt()
        self.plot_generation += 1
        self._plot_cursor = self.sandbox.cursor()
        integer = request.kind == "hist" and pa.types.is_integer(
            self.window.schema.field(request.x).type)
        sql = view_sql(self.view.base, self.view.where, None)  # the order cannot change a plot
        self._status("plotting the whole result in DuckDB… (Esc cancels)")
        self._compute_plot(self._plot_cursor, sql, request, integer, self.plot_generation)

    @work(thread=True, group="console-plot", exit_on_error=False)
    def _compute_plot(self, cursor: duckdb.DuckDBPyConnection, sql: str, request: PlotRequest,
                      integer: bool, generation: int) -> None:
        try:
            data = compute_plot(cursor, sql, request, integer_x=integer)
        except (duckdb.Error, RuntimeError, ValueError) as e:
            self.post_message(PlotFailed(generation, _describe(e)))
            return
        finally:
            with contextlib.suppress(duckdb.Error):
                cursor.close()
        self.post_message(PlotReady(generation, data))

    @on(PlotReady)
    def _plot_ready(self, message: PlotReady) -> None:
        if message.generation != self.plot_generation:
            return
        self._plot_cursor = None
        self._status(message.data.title)
        self.app.push_screen(PlotScreen(message.data))

    @on(PlotFailed)
    def _plot_failed(self, message: PlotFailed) -> None:
        if message.generation != self.plot_generation:
            return
        self._plot_cursor = None
        self._status(f"plot failed: {message.text}", error=True)

    def action_clear_editor(self) -> None:
        """Empty the editor in one key (it used to need select-all); history keeps the SQL."""
        editor = self.query_one("#editor", TextArea)
        editor.clear()  # an edit, so ctrl+z brings the text back
        editor.focus()
        self._status("editor cleared (ctrl+z undoes; ctrl+up recalls earlier queries)")

    def action_toggle_focus(self) -> None:
        editor = self.query_one("#editor", TextArea)
        (self.query_one(ResultsGrid) if editor.has_focus else editor).focus()

    # -- status ---------------------------------------------------------------------------------

    def _status_rows(self, seconds: float | None) -> None:
        window = self.window
        if window is None:
            return
        stream = window.stream
        parts = [f"{stream.rows_fetched:,} rows fetched"]
        if stream.truncated:
            parts.append(f"showing {stream.rows_fetched:,} of >{self.row_limit:,} (row limit)")
        elif not stream.exhausted:
            parts.append("more available")
        if seconds is not None:
            parts.append(f"first page {seconds * 1000:.0f} ms")
        if self.view is not None and self.view.describe():
            parts.append(self.view.describe())
        self._status(" · ".join(parts))

    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#console-status", Static)
        status.update(Text(text))  # Text, not markup: SQL and errors contain [brackets]
        status.set_class(error, "error")


def _describe(error: BaseException) -> str:
    """One readable block for an error: DuckDB's message (with its LINE/caret), no traceback."""
    return describe_error(error) or type(error).__name__
