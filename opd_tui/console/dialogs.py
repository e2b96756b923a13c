"""Small modals of the console: export target and preset picker."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Select
from textual.widgets.option_list import Option

from opd_tui.sql.export import FORMATS, SUFFIXES
from opd_tui.sql.presets import PRESETS


class ExportDialog(ModalScreen[tuple[str, str] | None]):
    """Ask for a file name (inside the export directory) and a format; returns (name, fmt)."""

    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    ExportDialog > Vertical { width: 70; height: auto; border: round $accent; padding: 1 2; }
    """
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

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

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class PresetMenu(ModalScreen[str | None]):
    """Pick a preset query; returns its id (the SQL then lands in the editor, editable)."""

    DEFAULT_CSS = """
    PresetMenu { align: center middle; }
    PresetMenu > OptionList { width: 60; height: auto; max-height: 80%; border: round $accent; }
    """
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    def compose(self) -> ComposeResult:
        yield OptionList(*[Option(p.title, id=p.id) for p in PRESETS])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
