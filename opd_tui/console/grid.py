"""Results grid over a `RowWindow`: renders only the visible lines (Textual's line API).

Row data lives in the window's bounded page cache; the grid asks for a fetch (a message the screen
turns into a worker) when it needs rows that are not resident, and draws `…` until they arrive.
Cell text comes from the model or the user's SQL: it is made single-line and control-free here.
The grid binds no keys itself: the console's registry actions move its cursor (help and palette
list them), so the same key never means two things depending on which class declared it.
"""

from __future__ import annotations

import datetime
import decimal
import math

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from opd_tui.render import safe_text, truncate_cells
from opd_tui.sql.stream import RowWindow

MAX_COL_CELLS = 40
TOKEN_KEY = ("question_id", "rollout", "pos")

PLAIN = Style()
"""Padding style: a segment without one (style None) crashes Textual's NO_COLOR filter."""


def format_cell(value: object) -> str:
    """One-line display text of a value: ∅ for NULL, short floats, visible control characters."""
    if value is None:
        return "∅"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, int | decimal.Decimal | datetime.date | datetime.datetime):
        return str(value)
    if isinstance(value, bytes):
        return value[:64].hex(" ") + (" …" if len(value) > 64 else "")
    return safe_text(str(value), max_chars=400).replace("\n", "⏎")


def full_text(value: object) -> str:
    """The whole value for the detail view: every character (newlines kept, controls visible),
    floats at full precision, bytes in full hex; the grid's `format_cell` cuts all of these."""
    if isinstance(value, float) and not math.isnan(value):
        return repr(value)
    if isinstance(value, bytes):
        return value.hex(" ")
    if value is None or isinstance(value, bool | int | decimal.Decimal | float | datetime.date):
        return format_cell(value)
    return safe_text(str(value), max_chars=10**7)


class ResultsGrid(ScrollView, can_focus=True, inherit_bindings=False):
    """A scrollable table of the current result; line 0 is the sticky header.

    `inherit_bindings=False` drops ScrollView's arrow/page bindings, which would scroll the view
    without moving the cursor and shadow the console's registry keys.
    """

    DEFAULT_CSS = """
    ResultsGrid { height: 1fr; border: round $panel; }
    ResultsGrid:focus { border: round $accent; }
    """

    class NeedRows(Message):
        """Rows start..stop are not resident: the screen should fetch them in a worker."""

        def __init__(self, start: int, stop: int) -> None:
            super().__init__()
            # not `self.stop`: that would shadow Message.stop(), which Textual calls on bubbling
            self.first, self.end = start, stop

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.window: RowWindow | None = None
        self.widths: list[int] = []
        self.cursor_row = 0
        self.cursor_col = 0
        self.sort: tuple[int, bool] | None = None
        """(column index, descending) of the query's current ORDER BY, marked in the header."""
        self._requested: tuple[int, int] | None = None

    # -- data ---------------------------------------------------------------------------------

    def show(self, window: RowWindow | None, *, cursor_col: int = 0,
             sort: tuple[int, bool] | None = None) -> None:
        """Display a new result (None clears the grid); a re-sorted result keeps its column."""
        self.window = window
        self.sort = sort
        self.cursor_row = 0
        columns = len(window.column_names) if window is not None else 0
        self.cursor_col = max(0, min(cursor_col, columns - 1))
        self._requested = None
        self.widths = self._measure() if window is not None else []
        self.scroll_to(0, 0, animate=False)
        self.refresh_size()

    def refresh_size(self) -> None:
        """Rows arrived (or the result changed): update the scrollable area and redraw."""
        rows = self.window.known_rows if self.window is not None else 0
        self.virtual_size = Size(sum(w + 1 for w in self.widths) + 1, rows + 1)
        self._requested = None
        self.refresh()

    def _measure(self) -> list[int]:
        assert self.window is not None
        names = self.header()
        widths = [min(len(n), MAX_COL_CELLS) for n in names]
        for row in self.window.rows(0, 200):
            if row is None:
                continue
            for i, v in enumerate(row):
                widths[i] = min(max(widths[i], len(format_cell(v))), MAX_COL_CELLS)
        return [max(w, 1) for w in widths]

    def header(self) -> list[str]:
        """Column names, the sorted one marked ▲ (ascending) or ▼ (descending)."""
        if self.window is None:
            return []
        names = list(self.window.column_names)
        if self.sort is not None and 0 <= self.sort[0] < len(names):
            col, desc = self.sort
            names[col] += " ▼" if desc else " ▲"
        return names

    @property
    def column_name(self) -> str | None:
        """Name of the cursor's column."""
        if self.window is None or not self.window.column_names:
            return None
        return self.window.column_names[self.cursor_col]

    @property
    def row_count(self) -> int:
        return self.window.known_rows if self.window is not None else 0

    def cell(self, row: int, col: int) -> object:
        if self.window is None:
            return None
        got = self.window.rows(row, row + 1)
        return got[0][col] if got and got[0] is not None else None

    def row_values(self, row: int) -> tuple[object, ...] | None:
        if self.window is None:
            return None
        got = self.window.rows(row, row + 1)
        return got[0] if got else None

    def token_key(self, row: int) -> tuple[str, int, int] | None:
        """The (question_id, rollout, pos) of a row, when the result has those columns."""
        if self.window is None:
            return None
        names = self.window.column_names
        if not all(k in names for k in TOKEN_KEY):
            return None
        values = self.row_values(row)
        if values is None:
            return None
        q, r, p = (values[names.index(k)] for k in TOKEN_KEY)
        if q is None or r is None or p is None:
            return None
        return str(q), int(r), int(p)

    # -- rendering ------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x, scroll_y = self.scroll_offset
        if self.window is None:
            return Strip.blank(width, PLAIN)
        if y == 0:
            segments = self._segments(self.header(), Style(bold=True, underline=True))
            return Strip(segments).crop(scroll_x, scroll_x + width).extend_cell_length(width, PLAIN)
        row = scroll_y + y - 1
        if row >= self.row_count:
            return Strip.blank(width, PLAIN)
        values = self.window.rows(row, row + 1)
        if not values or values[0] is None:
            self._request(row)
            texts = ["…"] * len(self.widths)
        else:
            texts = [format_cell(v) for v in values[0]]
        selected = row == self.cursor_row
        style = Style(reverse=True) if selected and self.has_focus else Style()
        segments = self._segments(texts, style, cursor=self.cursor_col if selected else None)
        return Strip(segments).crop(scroll_x, scroll_x + width).extend_cell_length(width, PLAIN)

    def _segments(self, texts: list[str], style: Style, cursor: int | None = None) -> list[Segment]:
        out: list[Segment] = []
        for i, (text, w) in enumerate(zip(texts, self.widths, strict=False)):
            cell = truncate_cells(text, w).ljust(w)
            cell_style = style + Style(bold=True, underline=True) if i == cursor else style
            out.append(Segment(cell, cell_style))
            out.append(Segment("│" if i < len(self.widths) - 1 else " ", Style(dim=True)))
        return out

    def _request(self, row: int) -> None:
        height = self.scrollable_content_region.height
        start = max(0, self.scroll_offset.y - height)
        stop = self.scroll_offset.y + 2 * height
        if self._requested is None or not (self._requested[0] <= row < self._requested[1]):
            self._requested = (start, stop)
            self.post_message(self.NeedRows(start, stop))

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        # ask for rows ahead of the viewport before they are needed: smooth scrolling at the end
        if self.window is not None and not self.window.stream.exhausted:
            end = int(new) + 2 * self.scrollable_content_region.height
            if end >= self.row_count:
                self.post_message(self.NeedRows(int(new), end + 2048))

    # -- cursor (driven by the console's registry actions) -------------------------------------

    @property
    def page_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 2)

    def move_cursor(self, rows: int = 0, cols: int = 0) -> None:
        if self.window is None or not self.row_count:
            return
        self.cursor_row = max(0, min(self.row_count - 1, self.cursor_row + rows))
        self.cursor_col = max(0, min(len(self.widths) - 1, self.cursor_col + cols))
        height = self.scrollable_content_region.height - 1
        if self.cursor_row < self.scroll_offset.y:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= self.scroll_offset.y + height:
            self.scroll_to(y=self.cursor_row - height + 1, animate=False)
        x0 = sum(w + 1 for w in self.widths[: self.cursor_col])
        x1 = x0 + self.widths[self.cursor_col] + 1
        width = self.scrollable_content_region.width
        if x0 < self.scroll_offset.x:
            self.scroll_to(x=x0, animate=False)
        elif x1 > self.scroll_offset.x + width:
            self.scroll_to(x=x1 - width, animate=False)
        if self.cursor_row >= self.row_count - height and not self.window.stream.exhausted:
            self.post_message(self.NeedRows(self.cursor_row, self.cursor_row + 4096))
        self.refresh()
