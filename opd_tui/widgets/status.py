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
        text = Text.assemble(
            (f" {file} ", "bold"), ("[live, read-only]" if live else "[read-only]", "green"),
            f"  {counts.get('questions', 0):,} q  {counts.get('rollouts', 0):,} rollouts  "
            f"{counts.get('tokens', 0):,} tokens   ",
            ("teacher ", "dim"), (teacher, "bold"), ("  signal ", "dim"), (signal, "bold"),
        )
        if layer:
            text.append("  layer ", "dim")
            text.append(layer, "bold")
        if note:
            text.append(f"  {note}", "yellow")
        self.update(text)
