"""The SQL console (Textual): `ConsoleScreen` over the Textual-free core in `opd_tui.sql`."""

from opd_tui.console.screen import ConsoleScreen, JumpToToken

__all__ = ["ConsoleScreen", "JumpToToken"]
