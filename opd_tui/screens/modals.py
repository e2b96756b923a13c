"""Modal screens: context help, the SQL behind a view, teacher prompts."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from opd_tui import actions
from opd_tui.glossary import glossary_table


class TextModal(ModalScreen[None]):
    """A scrollable box of text; `y` copies `copy_text` to the clipboard (OSC 52)."""

    scope = "modal"
    BINDINGS = actions.bindings("modal")
    DEFAULT_CSS = """
    TextModal { align: center middle; }
    TextModal > VerticalScroll { width: 90%; height: 85%; border: round $primary;
                                 background: $surface; padding: 0 1; }
    """

    def __init__(self, title: str, body: RenderableType, copy_text: str = "") -> None:
        super().__init__()
        self.title_text, self.body, self.copy_text = title, body, copy_text

    def compose(self):  # type: ignore[no-untyped-def]
        with VerticalScroll() as box:
            box.border_title = self.title_text
            box.border_subtitle = "q/Esc close" + ("   y copy" if self.copy_text else "")
            yield Static(self.body, id="modal-body")

    def action_copy(self) -> None:
        if self.copy_text:
            from opd_tui.clipboard import copy

            copy(self.app, self.copy_text, "text")


def help_body(scope: str, text: str) -> Group:
    table = Table(box=None, header_style="bold", padding=(0, 2))
    table.add_column("key")
    table.add_column("action")
    table.add_column("id", style="dim")
    for a in actions.for_scope(scope):
        table.add_row(a.key_label, a.description, a.id)
    return Group(Text(text + "\n"), table, Text(""), glossary_table())
