"""The SQL console screen: editor, status line and streaming results grid over the sandbox.

Threading follows the app's rule: workers run DuckDB and never touch widgets; they post messages
and the handlers here update state. Every query carries a generation number so a result that
arrives after a newer run (or a cancel) is dropped.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import duckdb
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static, TextArea

from opd_tui import actions
from opd_tui.actions import Action
from opd_tui.console.dialogs import ExportDialog, PresetMenu
from opd_tui.console.grid import ResultsGrid, format_cell
from opd_tui.console.plot import PlotScreen
from opd_tui.sql.export import export_query
from opd_tui.sql.history import History
from opd_tui.sql.presets import PRESET_BY_ID
from opd_tui.sql.sandbox import Sandbox, SandboxError, describe_error, open_sandbox
from opd_tui.sql.statements import RefusedStatement, error_position
from opd_tui.sql.stream import DEFAULT_ROW_LIMIT, RowWindow, start_query

FIRST_PAGE_ROWS = 256
MEMORY_LIMIT = "512MB"
"""DuckDB's buffer pool cap inside the TUI: a big sort or join spills to disk instead of growing
the process while the user scrolls."""
EXPORT_DIR_ENV = "OPD_TUI_EXPORT_DIR"

CONSOLE_ACTIONS = (
    Action("console.run", "ctrl+j,f5,ctrl+enter", "Run query", "console", "run_query"),
    # ctrl+c cancels from the grid; in the editor TextArea keeps it for copy (Esc works in both)
    Action("console.cancel", "escape,ctrl+c", "Cancel query (idle: back)", "console",
           "cancel_or_back"),
    Action("console.presets", "f2", "Preset queries", "console", "presets"),
    Action("console.plot", "f3", "Plot result", "console", "plot"),
    Action("console.export", "f8", "Export result", "console", "export"),
    Action("console.focus", "f4", "Editor / results", "console", "toggle_focus"),
    Action("console.copy_cell", "y", "Copy cell (OSC 52)", "console", "copy_cell", show=False),
    Action("console.copy_row", "Y", "Copy row as TSV (OSC 52)", "console", "copy_row",
           show=False),
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
    def __init__(self, generation: int, text: str, sql: str) -> None:
        super().__init__()
        self.generation, self.text, self.sql = generation, text, sql


class RowsFetched(Message):
    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation


class ConsoleScreen(Screen[None]):
    """Ad-hoc SQL over the run: read-only, fenced, streamed, cancellable."""

    scope = "console"
    HELP = ("SQL over the run (read-only). ctrl+j / F5 runs the editor, Esc or ctrl+c cancels, "
            "Enter on a result row with question_id, rollout, pos opens that token.")
    BINDINGS = actions.bindings("console")
    DEFAULT_CSS = """
    ConsoleScreen #editor { height: 40%; }
    ConsoleScreen #console-status { height: 3; padding: 0 1; }
    ConsoleScreen #console-status.error { color: $error; }
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

    def compose(self) -> ComposeResult:
        try:
            editor = TextArea.code_editor("", language="sql", id="editor")
        except Exception:  # noqa: BLE001 - no tree-sitter grammar: plain editor, still usable
            editor = TextArea.code_editor("", id="editor")
        yield editor
        hint = "Type SQL and press ctrl+j or F5.  F2 presets · F4 results · F8 export"
        yield Static(hint, id="console-status")
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
        if self._cursor is not None:
            self._cursor.interrupt()
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
        self.generation += 1
        self.running = True
        self.last_error = None
        self._cursor = self.sandbox.cursor()
        self._status("running… (Esc / ctrl+c cancels)")
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
        self.query_one(ResultsGrid).show(message.window)
        self._status_rows(message.seconds)

    @on(QueryFailed)
    def _failed(self, message: QueryFailed) -> None:
        if message.generation != self.generation:
            return
        self.running = False
        self.last_error = message.text
        where = error_position(message.text, message.sql)
        prefix = f"line {where.line}, column {where.column}: " if where else ""
        self._status(prefix + message.text, error=True)
        if where is not None:
            self.query_one("#editor", TextArea).cursor_location = (where.line - 1, where.column - 1)

    def _interrupt(self) -> None:
        if self._cursor is not None:
            self._cursor.interrupt()

    def action_cancel_or_back(self) -> None:
        if self.running:
            self._interrupt()
            self.generation += 1  # whatever the worker posts now is stale
            self.running = False
            self._status("cancelled", error=True)
        elif hasattr(self.app, "action_back") and len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    # -- streaming more rows --------------------------------------------------------------------

    @on(ResultsGrid.NeedRows)
    def _need_rows(self, message: ResultsGrid.NeedRows) -> None:
        if self.window is None:
            return
        if self._fetching:
            self._want = (message.start, message.stop)
            return
        self._fetching = True
        self._fetch(self.window, message.start, message.stop, self.generation)

    @work(thread=True, group="console-fetch", exit_on_error=False)
    def _fetch(self, window: RowWindow, start: int, stop: int, generation: int) -> None:
        try:
            window.ensure(start, stop)
        except (duckdb.Error, RuntimeError) as e:
            self.post_message(QueryFailed(generation, _describe(e), ""))
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

    @on(ResultsGrid.RowChosen)
    def _row_chosen(self, message: ResultsGrid.RowChosen) -> None:
        if message.key is None:
            self._status("this result has no question_id, rollout, pos columns to jump to")
            return
        open_token = getattr(self.app, "open_token", None)
        if callable(open_token):
            open_token(*message.key)
        else:
            self.post_message(JumpToToken(*message.key))

    def action_copy_cell(self) -> None:
        grid = self.query_one(ResultsGrid)
        if grid.window is not None and grid.row_count:
            self._copy(format_cell(grid.cell(grid.cursor_row, grid.cursor_col)))

    def action_copy_row(self) -> None:
        grid = self.query_one(ResultsGrid)
        values = grid.row_values(grid.cursor_row)
        if values is not None:
            self._copy("\t".join(format_cell(v) for v in values))

    def _copy(self, text: str) -> None:
        self.app.copy_to_clipboard(text)  # OSC 52: works over SSH (tmux: set-clipboard on)
        self._status(f"copied {len(text)} characters to the clipboard (OSC 52)")

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
        if self.window is not None:
            self.app.push_screen(PlotScreen(self.window))

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
        self._status(" · ".join(parts))

    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#console-status", Static)
        status.update(Text(text))  # Text, not markup: SQL and errors contain [brackets]
        status.set_class(error, "error")


def _describe(error: BaseException) -> str:
    """One readable block for an error: DuckDB's message (with its LINE/caret), no traceback."""
    return describe_error(error) or type(error).__name__
