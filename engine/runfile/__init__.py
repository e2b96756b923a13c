"""The run file: its DuckDB schema, the crash-safe part store, the materialised summaries and the
printed report. The only part of `engine` that `opd_tui` imports; torch-free (enforced by
tests/test_layout.py).
"""
