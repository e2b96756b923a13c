"""The value curve along a rollout: where success collapses.

Two rows of block glyphs over the rollout's tokens, on the absolute scale [0, 1]: V̂ (the node's
success probability before the token, from its candidates) and S(y) (the estimated success
probability of the token the student actually wrote). A token that drops S(y) far below V̂ is
where the rollout was lost. A long rollout is binned into the widget's width (mean of the probed
tokens of each bin); the cursor's bin is reversed and the cursor's values are written at the end.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.widget import Widget

LEVELS = "▁▂▃▄▅▆▇█"
"""Heights for values in [0, 1]: 0 is the lowest block (not a gap), a gap means not probed."""

LABEL_CELLS = 5
READOUT_CELLS = 22


def binned(values: list[float | None], width: int) -> list[float | None]:
    """Mean of the non-NULL values of each of `width` equal bins of token indices (one bin per
    token when there are fewer tokens than cells); NULL where a bin holds no probed token."""
    n = len(values)
    if n == 0 or width <= 0:
        return []
    bins = min(width, n)
    out: list[float | None] = []
    for b in range(bins):
        chunk = [v for v in values[b * n // bins:(b + 1) * n // bins]
                 if v is not None and math.isfinite(v)]
        out.append(sum(chunk) / len(chunk) if chunk else None)
    return out


def bin_of(index: int, n: int, width: int) -> int:
    """The bin of token `index` among `n` tokens drawn in `width` cells (inverse of `binned`)."""
    bins = min(width, n)
    return max(0, min(bins - 1, ((index + 1) * bins - 1) // n)) if n and bins > 0 else 0


def glyph(value: float | None) -> str:
    if value is None:
        return " "
    v = min(max(value, 0.0), 1.0)
    return LEVELS[min(len(LEVELS) - 1, int(v * len(LEVELS)))]


def _prob(value: float | None) -> str:
    return "∅" if value is None else f"{value:.2f}"


class ValueCurve(Widget):
    """V̂ and S(y) per token, binned to the width; `w` in the rollout view hides it."""

    DEFAULT_CSS = """
    ValueCurve { height: 2; width: 1fr; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.v_hat: list[float | None] = []
        self.s_sampled: list[float | None] = []
        self.cursor = 0
        self._bins: dict[int, tuple[list[float | None], list[float | None]]] = {}
        """Binned rows by cell count: a cursor step redraws without re-binning 32k tokens."""

    def set_values(self, v_hat: list[float | None], s_sampled: list[float | None]) -> None:
        """Per token index (not pos): NULL where the token was not probed."""
        self.v_hat, self.s_sampled = v_hat, s_sampled
        self._bins = {}
        self.cursor = min(self.cursor, max(len(v_hat) - 1, 0))
        self.refresh()

    def set_cursor(self, index: int) -> None:
        if index != self.cursor:
            self.cursor = index
            self.refresh()

    def rows(self, width: int) -> tuple[Text, Text]:
        """The two lines for a widget `width` cells wide (a pure function of the state)."""
        cells = max(width - LABEL_CELLS - READOUT_CELLS, 1)
        n = len(self.v_hat)
        at = bin_of(self.cursor, n, cells)
        if cells not in self._bins:
            self._bins[cells] = (binned(self.v_hat, cells), binned(self.s_sampled, cells))
        out = []
        for label, values, bins, style in (("V̂   ", self.v_hat, self._bins[cells][0], "blue"),
                                           ("S(y) ", self.s_sampled, self._bins[cells][1],
                                            "bold")):
            line = Text(label, "bold")
            for b, v in enumerate(bins):
                line.append(glyph(v), (style + " reverse") if b == at else style)
            here = values[self.cursor] if n and self.cursor < n else None
            line.append(f"  {label.strip()} {_prob(here)}", "bold")
            out.append(line)
        if n:
            out[1].append("  drop" if _drops(self.v_hat, self.s_sampled, self.cursor) else "",
                          "bold reverse")
        return out[0], out[1]

    def render(self) -> Text:
        if not self.v_hat:
            return Text("value curve: no probed tokens in this rollout", "dim")
        top, bottom = self.rows(self.size.width)
        return Text("\n").join([top, bottom])


DROP = 0.5
"""S(y) this far below V̂ marks the token as a drop in the readout (a lost rollout's turn)."""


def _drops(v_hat: list[float | None], s_sampled: list[float | None], index: int) -> bool:
    if index >= len(v_hat):
        return False
    v, s = v_hat[index], s_sampled[index]
    return v is not None and s is not None and v - s >= DROP
