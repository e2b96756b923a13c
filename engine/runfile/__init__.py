"""The run file: its DuckDB schema, the crash-safe part store, the materialised summaries and the
printed report, plus what readers share with them: the names the file fixes (names.py), SQL
quoting (sql.py) and where the demo run lives (demo.py). The only part of `engine` that `opd_tui`
imports; torch-free (enforced by tests/test_layout.py).
"""
