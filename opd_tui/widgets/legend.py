"""The colour legend of the rollout view: what the active layer's colours and attributes mean.

Colours alone do not survive NO_COLOR or a colour-blind reader, so the legend also spells out
the attributes (underline = labelled, bold = helps, italic = hurts) that carry the labels.
"""

from __future__ import annotations

from rich.text import Text

from opd_tui.queries import Layer
from opd_tui.render import categorical, diverging, sequential

SWATCHES = 7


def _scale_text(scale: float | None) -> str:
    return "rollout's 95% |value|" if scale is None else f"{scale:g}"


def legend(layer: Layer, teachers: list[str], mono: bool = False,
           other: str | None = None) -> Text:
    """One line for `layer`: its scale as swatches with the ends named, then the attributes."""
    line = Text()
    if layer.kind == "categorical":
        line.append("best teacher: ", "bold")
        for i, t in enumerate(teachers):
            line.append(f" {t} ", categorical(i, mono) or "")
            line.append(" ")
        line.append(" plain: no confident best", "dim")
    elif layer.kind == "sequential":
        line.append("0 ", "bold")
        for k in range(SWATCHES):
            line.append("  ", sequential((k + 0.5) / SWATCHES, 1.0) or "")
        line.append(f" {_scale_text(layer.scale)}", "bold")
        line.append("  (low → high)", "dim")
    else:
        scale = layer.scale
        low, high = ("other better", "this teacher better") if layer.id == "diff" else (
            "hurts", "helps")
        line.append(f"{low} ", "bold")
        for k in range(SWATCHES):
            line.append("  ", diverging(2 * k / (SWATCHES - 1) - 1, 1.0) or "")
        line.append(f" {high}", "bold")
        line.append(f"  ±{_scale_text(scale)}", "dim")
        if layer.id == "diff" and other:
            line.append(f"  vs {other} (D: another)", "bold")
    line.append("  │ ")
    line.append("underlined", "underline")
    line.append(": labelled, ")
    line.append("bold", "bold underline")
    line.append(" helps, ")
    line.append("italic", "italic underline")
    line.append(" hurts │ plain: not probed", "")
    return line
