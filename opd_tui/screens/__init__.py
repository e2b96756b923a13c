"""Screens of the browsing TUI: overview, questions, rollout, and modals."""
