"""Terminal plot of the current result: a histogram of a numeric column, or value by position.

The data is read from the result's resident pages only (at most the first page budget), so a
plot never pulls a 10-million-row result into memory.
"""

from __future__ import annotations

import pyarrow as pa
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual_plotext import PlotextPlot

from opd_tui.sql.stream import RowWindow

MAX_POINTS = 20_000


def plot_spec(window: RowWindow) -> tuple[str, str | None, str] | None:
    """(kind, x column, y column): a line of y by `pos` when there is a pos column, else a
    histogram of the first numeric column; None when nothing numeric is plottable."""
    numeric = [f.name for f in window.schema if pa.types.is_integer(f.type)
               or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)]
    keys = {"question_id", "rollout", "pos"}
    values = [n for n in numeric if n not in keys]
    if not values:
        return None
    if "pos" in numeric:
        return "line", "pos", values[0]
    return "hist", None, values[0]


class PlotScreen(ModalScreen[None]):
    DEFAULT_CSS = "PlotScreen { align: center middle; } PlotextPlot { width: 90%; height: 80%; }"
    BINDINGS = [Binding("escape,q", "app.pop_screen", "Close")]

    def __init__(self, window: RowWindow) -> None:
        super().__init__()
        self.window = window
        self.spec = plot_spec(window)

    def compose(self) -> ComposeResult:
        yield PlotextPlot()

    def on_mount(self) -> None:
        plt = self.query_one(PlotextPlot).plt
        if self.spec is None:
            plt.title("nothing numeric to plot in this result")
            return
        kind, x_name, y_name = self.spec
        names = self.window.column_names
        rows = [r for r in self.window.rows(0, min(self.window.known_rows, MAX_POINTS)) if r]
        y = [r[names.index(y_name)] for r in rows]
        if kind == "line" and x_name is not None:
            pairs = sorted((r[names.index(x_name)], v) for r, v in zip(rows, y, strict=True)
                           if v is not None and r[names.index(x_name)] is not None)
            plt.plot([p for p, _ in pairs], [float(v) for _, v in pairs])
            plt.xlabel(x_name)
        else:
            plt.hist([float(v) for v in y if v is not None], bins=30)
            plt.xlabel(y_name)
        plt.title(f"{y_name} ({len(rows):,} resident rows)")
