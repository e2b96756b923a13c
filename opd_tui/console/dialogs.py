"""Small modals of the console: export target, preset picker, plot chooser, whole cell value.

Their keys come from the registry's "modal" scope (q/Esc close, y copy), so help and the palette
list them; widgets inside (Input, Select, Button) keep their own standard keys.
"""

from __future__ import annotations

import pyarrow as pa
from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from opd_tui import actions
from opd_tui.clipboard import copy
from opd_tui.console.grid import full_text
from opd_tui.console.plot import KINDS, PlotRequest, default_request, integer_columns
from opd_tui.console.plot import numeric_columns as plot_numeric_columns
from opd_tui.sql.export import FORMATS, SUFFIXES
from opd_tui.sql.presets import PRESETS


def close_bindings() -> list[Binding]:
    """Only the registry's close keys: for modals that have nothing to copy."""
    return [b for b in actions.bindings("modal") if b.id == "modal.close"]


class ExportDialog(ModalScreen[tuple[str, str] | None]):
    """Ask for a file name (inside the export directory) and a format; returns (name, fmt)."""

    scope = "modal"
    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    ExportDialog > Vertical { width: 70; height: auto; border: round $accent; padding: 1 2; }
    """
    BINDINGS = close_bindings()

    def __init__(self, export_dir: str) -> None:
        super().__init__()
        self.export_dir = export_dir

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Export the full result (DuckDB writer) into {self.export_dir}")
            yield Select([(f, f) for f in FORMATS], value="csv", allow_blank=False, id="fmt")
            yield Input(value="result.csv", id="name")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        name = self.query_one("#name", Input)
        stem = name.value.rsplit(".", 1)[0] or "result"
        name.value = stem + SUFFIXES[str(event.value)]

    def on_input_submitted(self, event: Input.Submitted) -> None:
        fmt = str(self.query_one("#fmt", Select).value)
        self.dismiss((event.value.strip() or "result" + SUFFIXES[fmt], fmt))


class PresetMenu(ModalScreen[str | None]):
    """Pick a preset query; returns its id (the SQL then lands in the editor, editable)."""

    scope = "modal"
    DEFAULT_CSS = """
    PresetMenu { align: center middle; }
    PresetMenu > OptionList { width: 60; height: auto; max-height: 80%; border: round $accent; }
    """
    BINDINGS = close_bindings()

    def compose(self) -> ComposeResult:
        yield OptionList(*[Option(p.title, id=p.id) for p in PRESETS])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


SLOT_LABELS = {"hist": ("column", None), "scatter": ("x", "y"),
               "by_pos": ("position (integer)", "mean of")}


class PlotDialog(ModalScreen[PlotRequest | None]):
    """Choose the plot kind and its column(s); defaults are ready, so F3 then Enter plots."""

    scope = "modal"
    DEFAULT_CSS = """
    PlotDialog { align: center middle; }
    PlotDialog > Vertical { width: 64; height: auto; max-height: 100%; border: round $accent;
                            padding: 0 1; }
    PlotDialog #go { margin-top: 1; }
    """
    BINDINGS = close_bindings()

    def __init__(self, schema: pa.Schema, filtered: bool = False) -> None:
        super().__init__()
        self.schema = schema
        self.filtered = filtered
        self.kinds = [k for k in KINDS if default_request(schema, k) is not None]

    def compose(self) -> ComposeResult:
        with Vertical():
            scope = "the filtered result" if self.filtered else "the whole result"
            yield Static(f"Plot {scope} (DuckDB reads every row, not only those on screen)\n"
                         "Enter: plot · Tab / shift+Tab: change the choices · Esc: cancel")
            yield Label("kind")
            yield Select([(KINDS[k], k) for k in self.kinds], value=self.kinds[0],
                         allow_blank=False, id="kind")
            yield Label("", id="a-label")
            yield Select([("", "")], allow_blank=False, id="a")
            yield Label("", id="b-label")
            yield Select([("", "")], allow_blank=False, id="b")
            yield Button("Plot", variant="primary", id="go")

    def on_mount(self) -> None:
        self._set_kind(self.kinds[0])
        self.query_one("#go", Button).focus()

    def _set_kind(self, kind: str) -> None:
        """Offer the columns that fit `kind` and preselect its defaults."""
        default = default_request(self.schema, kind)
        assert default is not None
        numeric = plot_numeric_columns(self.schema)
        first = integer_columns(self.schema) if kind == "by_pos" else numeric
        a, b = self.query_one("#a", Select), self.query_one("#b", Select)
        # Text, not str: Select parses a str prompt as markup, and names come from the user's SQL
        a.set_options([(Text(n), n) for n in first])
        a.value = default.x
        b.set_options([(Text(n), n) for n in numeric])
        if default.y is not None:
            b.value = default.y
        a_label, b_label = SLOT_LABELS[kind]
        self.query_one("#a-label", Label).update(a_label)
        self.query_one("#b-label", Label).update(b_label or "")
        for widget in (b, self.query_one("#b-label", Label)):
            widget.display = b_label is not None

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "kind":
            self._set_kind(str(event.value))

    def request(self) -> PlotRequest:
        """The current choice."""
        kind = str(self.query_one("#kind", Select).value)
        x = str(self.query_one("#a", Select).value)
        y = None if kind == "hist" else str(self.query_one("#b", Select).value)
        return PlotRequest(kind, x, y)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "go":
            self.dismiss(self.request())


class CellDetail(ModalScreen[None]):
    """The whole value of one cell and its whole row (column: value), scrollable; y copies."""

    scope = "modal"
    DEFAULT_CSS = """
    CellDetail { align: center middle; }
    CellDetail > VerticalScroll { width: 90%; height: 85%; border: round $accent; padding: 0 1; }
    """
    BINDINGS = actions.bindings("modal")

    def __init__(self, schema: pa.Schema, values: tuple[object, ...], column: int,
                 row: int) -> None:
        super().__init__()
        self.schema, self.values, self.column, self.row = schema, values, column, row
        self.value_text = full_text(values[column])

    def body(self) -> Group:
        """Plain `Text` throughout: values come from the model and the user's SQL."""
        names = self.schema.names
        head = Text(f"{names[self.column]} ({self.schema.field(self.column).type})", style="bold")
        parts: list[Text] = [head, Text(self.value_text), Text(""),
                             Text(f"row {self.row + 1:,}", style="bold")]
        for name, value in zip(names, self.values, strict=True):
            line = Text()
            line.append(f"{name}: ", style="bold")
            line.append(full_text(value))
            parts.append(line)
        return Group(*parts)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail") as box:
            box.border_title = f"cell and row {self.row + 1:,}"
            box.border_subtitle = "q/Esc close · y copy the cell · ↑↓ PgUp PgDn scroll"
            yield Static(self.body(), id="detail-body")

    def on_mount(self) -> None:
        self.query_one("#detail", VerticalScroll).focus()

    def action_copy(self) -> None:
        copy(self.app, self.value_text, "cell value")
