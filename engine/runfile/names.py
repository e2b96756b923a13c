"""Names the run file fixes, in an import-free module so that `engine.maths` (torch) and the
config share them with the schema without loading DuckDB, and no second copy can drift."""

from __future__ import annotations

SIGNALS = ("rkl", "fkl", "jsd", "sampled")
"""Signal families of method.md: reverse KL, forward KL, generalised JSD(beta), sampled-token."""

CONTROL_SHARPENED = "ctrl_sharpened"
"""The control teacher that is the student itself at a lower temperature (no knowledge)."""
CONTROL_SOFTENED = "ctrl_softened"
"""The control teacher that is the first external teacher at a higher temperature."""
CONTROLS = (CONTROL_SHARPENED, CONTROL_SOFTENED)
