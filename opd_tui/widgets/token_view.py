"""A rollout's tokens as flowing text, drawn with Textual's line API.

Only visible lines are rendered, and a cursor step refreshes just the two lines it touches, so
stepping through a 32,000-token rollout costs the same as through a short one. The layout (which
token starts each display line) is recomputed only when the width or the tokens change, and
rendered lines are kept (a few hundred `Strip`s) so a scroll by one line builds one new line, not
a screenful.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

CURSOR = Style(reverse=True, bold=True)
MARKS = {"⁺": Style(underline=True, bold=True), "⁻": Style(underline=True, italic=True)}
"""Helps / hurts as text attributes, never as inserted characters (`9⁻+⁺7⁺` was unreadable):
underline marks a labelled token, bold helps, italic hurts; both survive NO_COLOR."""


@dataclass
class TokenPaint:
    """What to draw for every token: visible text, line-break flag, layer style, marker."""

    texts: list[str]
    breaks: list[bool]
    styles: list[Style | None]
    markers: list[str]
    significant: list[int] = field(default_factory=list)
    """Indices of tokens with a marker, ascending (for n/N without scanning every token)."""

    def __post_init__(self) -> None:
        self.significant = [i for i, m in enumerate(self.markers) if m]


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
        self._strips: dict[int, Strip] = {}
        """Rendered display lines by line number; dropped when layout, style or width change."""
        self._strips_base: Style | None = None

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
        self.paint = TokenPaint(self.paint.texts, self.paint.breaks, styles, markers)
        self._layout_width = -1
        self._relayout()
        self.refresh()

    def _cells(self, i: int) -> int:
        return cell_len(self.paint.texts[i])

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
        self._strips.clear()
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
        self._strips.pop(old_line, None)
        self._strips.pop(new_line, None)
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
        """Keep the cursor visible; when it leaves the view, re-centre on it (vim's
        `scrolljump=-50`): a scroll repaints every visible line, so stepping line by line past
        the edge scrolls once per half screen instead of on every step."""
        line = self.line_of(self.cursor)
        top = int(self.scroll_offset.y)
        height = max(self.scrollable_content_region.height, 1)
        if top <= line < top + height:
            return
        self.scroll_to(y=max(line - height // 2, 0), animate=False, immediate=True)

    def next_significant(self, direction: int) -> int | None:
        """Index of the nearest marked token after (direction > 0) or before the cursor."""
        hits = self.paint.significant
        if direction > 0:
            i = bisect_right(hits, self.cursor)
            return hits[i] if i < len(hits) else None
        i = bisect_left(hits, self.cursor)
        return hits[i - 1] if i > 0 else None

    @property
    def page_lines(self) -> int:
        return max(self.scrollable_content_region.height - 1, 1)

    # -- drawing --------------------------------------------------------------------------

    MAX_CACHED_LINES = 512

    def notify_style_update(self) -> None:
        """Theme or pseudo-class changed: the base style, hence every cached line, is stale."""
        super().notify_style_update()
        self._strips_base = None
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        line = int(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        if self._strips_base is None:  # `rich_style` walks the DOM: once per style change
            self._strips_base = self.rich_style
        base = self._strips_base
        if line >= len(self._line_starts) or not self.paint.texts:
            return Strip.blank(width, base)
        if len(self._strips) > self.MAX_CACHED_LINES:
            self._strips.clear()
        strip = self._strips.get(line)
        if strip is None or strip.cell_length != width:
            strip = self._strips[line] = self._render_display_line(line, width, base)
        return strip

    def _render_display_line(self, line: int, width: int, base: Style) -> Strip:
        segments: list[Segment] = []
        paint = self.paint
        for i in range(self._line_starts[line], self._line_end(line)):
            style = base + (paint.styles[i] or Style())
            mark = MARKS.get(paint.markers[i])
            if mark is not None:
                style += mark
            if i == self.cursor:
                style += CURSOR
            segments.append(Segment(paint.texts[i], style))
        return Strip(segments).adjust_cell_length(width, base)
