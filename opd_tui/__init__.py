"""Terminal UI over an OPD diagnostic run database (never imports torch)."""
