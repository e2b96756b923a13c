"""Textual-free query core of the SQL console: sandboxed connection, streaming, export, presets.

Importing this package must not import Textual (a test guards it), so scripts and the batch CLI
start fast and the core is testable without a terminal.
"""

from opd_tui.sql.export import FORMATS, export_query
from opd_tui.sql.history import History
from opd_tui.sql.presets import PRESET_BY_ID, PRESETS, Preset
from opd_tui.sql.sandbox import Sandbox, open_sandbox
from opd_tui.sql.statements import ErrorPosition, RefusedStatement, check_read_only, error_position
from opd_tui.sql.stream import DEFAULT_ROW_LIMIT, ResultStream, RowWindow, start_query

__all__ = [
    "DEFAULT_ROW_LIMIT",
    "FORMATS",
    "PRESETS",
    "PRESET_BY_ID",
    "ErrorPosition",
    "History",
    "Preset",
    "RefusedStatement",
    "ResultStream",
    "RowWindow",
    "Sandbox",
    "check_read_only",
    "error_position",
    "export_query",
    "open_sandbox",
    "start_query",
]
