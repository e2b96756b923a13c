"""Status line: file, read-only flag, row counts and the active teacher / signal / layer."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; background: $panel; color: $text; }
    """

    def show(self, *, file: str, live: bool, counts: dict[str, int], teacher: str, signal: str,
             layer: str = "", note: str = "") -> None:
        # the selection first: on an 80-column terminal the file name and counts may be cut,
        # the teacher / signal / layer the numbers on screen belong to may not
        text = Text.assemble(
            (" teacher ", "dim"), (teacher, "bold"), ("  signal ", "dim"), (signal, "bold"),
        )
        if layer:
            text.append("  layer ", "dim")
            text.append(layer, "bold")
        if note:
            text.append(f"  {note}", "yellow")
        text.append(f"  │ {file} ", "bold")
        text.append("[live, read-only]" if live else "[read-only]", "green")
        text.append(f"  {counts.get('questions', 0):,} q  {counts.get('rollouts', 0):,} rollouts"
                    f"  {counts.get('tokens', 0):,} tokens")
        self.update(text)
