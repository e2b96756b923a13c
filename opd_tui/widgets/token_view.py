"""A rollout's tokens as flowing text, drawn with Textual's line API.

Only visible lines are rendered, and a cursor step refreshes just the two lines it touches, so
stepping through a 32,000-token rollout costs the same as through a short one. The layout (which
token starts each display line) is recomputed only when the width or the tokens change.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

CURSOR = Style(reverse=True, bold=True)
MARKER = Style(bold=True)
SIGNIFICANT = Style(underline=True)


@dataclass
class TokenPaint:
    """What to draw for every token: visible text, line-break flag, layer style, marker."""

    texts: list[str]
    breaks: list[bool]
    styles: list[Style | None]
    markers: list[str]


class TokenView(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    TokenView { height: 1fr; width: 1fr; }
    """

    class CursorMoved(Message):
        def __init__(self, pos: int) -> None:
            self.pos = pos
            super().__init__()

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.paint = TokenPaint([], [], [], [])
        self.cursor = 0
        self._line_starts: list[int] = [0]
        self._layout_width = -1

    # -- data -----------------------------------------------------------------------------

    def set_tokens(self, paint: TokenPaint, cursor: int = 0) -> None:
        self.paint = paint
        self.cursor = min(max(cursor, 0), max(len(paint.texts) - 1, 0))
        self._layout_width = -1
        self._relayout()
        self.refresh()
        self.scroll_to_cursor()
        self.post_message(self.CursorMoved(self.cursor))

    def restyle(self, styles: list[Style | None], markers: list[str]) -> None:
        """New colour layer: same layout, visible lines redrawn."""
        self.paint.styles, self.paint.markers = styles, markers
        self._layout_width = -1
        self._relayout()
        self.refresh()

    def _cells(self, i: int) -> int:
        return cell_len(self.paint.texts[i]) + cell_len(self.paint.markers[i])

    def _relayout(self) -> None:
        width = max(self.scrollable_content_region.width, 8)
        if width == self._layout_width:
            return
        starts, x = [0], 0
        n = len(self.paint.texts)
        for i in range(n):
            w = self._cells(i)
            if x and x + w > width:
                starts.append(i)
                x = 0
            x += w
            if self.paint.breaks[i] and i + 1 < n:
                starts.append(i + 1)
                x = 0
        self._line_starts = starts
        self._layout_width = width
        self.virtual_size = Size(width, len(starts))

    def line_of(self, index: int) -> int:
        return bisect_right(self._line_starts, index) - 1

    def on_resize(self) -> None:
        self._relayout()
        self.scroll_to_cursor()

    # -- cursor ---------------------------------------------------------------------------

    def move_to(self, index: int) -> None:
        n = len(self.paint.texts)
        if not n:
            return
        index = min(max(index, 0), n - 1)
        if index == self.cursor:
            return
        old_line = self.line_of(self.cursor)
        self.cursor = index
        new_line = self.line_of(index)
        self.refresh_line(old_line)
        if new_line != old_line:
            self.refresh_line(new_line)
        self.scroll_to_cursor()
        self.post_message(self.CursorMoved(index))

    def move_lines(self, delta: int) -> None:
        """Up/down: same column on the neighbouring line (or its last token)."""
        line = self.line_of(self.cursor)
        target = min(max(line + delta, 0), len(self._line_starts) - 1)
        if target == line:
            return
        col = sum(self._cells(i) for i in range(self._line_starts[line], self.cursor))
        start = self._line_starts[target]
        end = self._line_end(target)
        x, index = 0, start
        for i in range(start, end):
            if x + self._cells(i) > col:
                index = i
                break
            x += self._cells(i)
            index = i
        self.move_to(index)

    def _line_end(self, line: int) -> int:
        if line + 1 < len(self._line_starts):
            return self._line_starts[line + 1]
        return len(self.paint.texts)

    def scroll_to_cursor(self) -> None:
        line = self.line_of(self.cursor)
        top = int(self.scroll_offset.y)
        height = max(self.scrollable_content_region.height, 1)
        if line < top:
            self.scroll_to(y=line, animate=False, immediate=True)
        elif line >= top + height:
            self.scroll_to(y=line - height + 1, animate=False, immediate=True)

    @property
    def page_lines(self) -> int:
        return max(self.scrollable_content_region.height - 1, 1)

    # -- drawing --------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        line = int(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        if line >= len(self._line_starts) or not self.paint.texts:
            return Strip.blank(width, self.rich_style)
        base = self.rich_style
        segments: list[Segment] = []
        for i in range(self._line_starts[line], self._line_end(line)):
            style = base + (self.paint.styles[i] or Style())
            marker = self.paint.markers[i]
            if marker:
                style += SIGNIFICANT
            if i == self.cursor:
                style += CURSOR
            segments.append(Segment(self.paint.texts[i], style))
            if marker:
                segments.append(Segment(marker, base + MARKER))
        return Strip(segments).adjust_cell_length(width, base)
