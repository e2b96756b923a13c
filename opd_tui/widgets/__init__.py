"""Widgets of the browsing TUI, one per module."""
