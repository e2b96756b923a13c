"""Turn model output into safe, visible terminal text, and map scores to colours.

Token text is untrusted: it can hold Rich markup, ANSI escape sequences, control characters,
bidi overrides, partial UTF-8 and absurdly long strings. Everything the TUI draws from the data
goes through `visible_token` (or `safe_text` for longer strings), which returns plain text that
is always drawn as a `rich.text.Text` (never parsed as markup). Textual-free on purpose.
"""

from __future__ import annotations

import math
import unicodedata

from rich.cells import cell_len
from rich.color import Color
from rich.style import Style

MAX_TOKEN_CELLS = 24
"""A single token never takes more than this many cells, so one token cannot break the layout."""

_VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍", "\x1b": "␛", "\x7f": "␡"}
_INVISIBLE_FORMAT = {"Cf", "Zl", "Zp"}  # bidi overrides, zero-width, line/paragraph separators


def _visible_char(ch: str, keep_spaces: bool = False) -> str:
    if keep_spaces and ch == " ":
        return ch
    if ch in _VISIBLE:
        return _VISIBLE[ch]
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ .. ␟ control pictures
    if 0x80 <= code < 0xA0:  # C1 controls (0x9b is a one-byte CSI on some terminals)
        return f"\\x{code:02x}"
    category = unicodedata.category(ch)
    if category in _INVISIBLE_FORMAT or category == "Cs" or category == "Co":
        return f"\\u{code:04x}"
    if category == "Mn" or category == "Me":  # a lone combining mark would merge with its left
        return "◌" + ch
    return ch


def visible_token(
    text: str | None,
    raw: bytes | None = None,
    *,
    is_special: bool = False,
    max_cells: int = MAX_TOKEN_CELLS,
) -> str:
    """Printable, single-line, width-bounded rendering of one token.

    Whitespace becomes `␣ ⏎ ⇥`, controls become control pictures or `\\xNN`, special tokens are
    shown in angle brackets, and a token whose text holds U+FFFD (partial UTF-8) is shown from
    its exact bytes with the undecodable bytes as `\\xNN`.
    """
    if text is None:
        text = ""
    if is_special:
        shown = text if text.startswith("<") else f"<{text or 'special'}>"
        return truncate_cells("".join(_visible_char(c) for c in shown), max_cells)
    if "\ufffd" in text and raw is not None:
        text = bytes(raw).decode("utf-8", errors="backslashreplace")
    shown = "".join(_visible_char(c) for c in text) or "∅"
    return truncate_cells(shown, max_cells)


def safe_text(text: str | None, max_chars: int = 4000) -> str:
    """Multi-line text (prompts, continuations) with controls neutralised; newlines kept."""
    if text is None:
        return "∅"
    if len(text) > max_chars:
        text = text[:max_chars] + f"… [{len(text) - max_chars} more chars]"
    return "\n".join(
        "".join(_visible_char(c, keep_spaces=True) for c in line) for line in text.split("\n")
    )


def truncate_cells(text: str, max_cells: int) -> str:
    """Cut `text` to at most `max_cells` terminal cells, marking the cut with `…`."""
    if cell_len(text) <= max_cells:
        return text
    out, width = [], 0
    for ch in text:
        w = cell_len(ch)
        if width + w > max_cells - 1:
            break
        out.append(ch)
        width += w
    return "".join(out) + "…"


def ends_line(text: str | None) -> bool:
    """A token whose text ends with a newline ends its display line."""
    return bool(text) and text.endswith("\n")


# ---------------------------------------------------------------------------------------------
# Colour scales. Colours are chosen to stay distinct after quantisation to 256 colours; the
# help/hurt marker never relies on colour (see `marker_glyph`).

_NEUTRAL = (40, 40, 40)
_POSITIVE = (33, 102, 172)  # blue: helps / positive
_NEGATIVE = (214, 96, 77)  # orange-red: hurts / negative
_SEQUENTIAL = ((40, 40, 40), (94, 60, 153), (230, 97, 1))
CATEGORICAL = (
    (0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167),
    (86, 180, 233), (213, 94, 0), (240, 228, 66), (150, 150, 150),
)
"""Okabe-Ito palette: colour-blind safe categories (best teacher per token)."""


def _lerp(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    t = min(max(t, 0.0), 1.0)
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def diverging(value: float | None, scale: float = 1.0) -> Style | None:
    """Background for a signed score: blue above 0, orange-red below, grey near 0."""
    if value is None or not math.isfinite(value) or scale <= 0:
        return None
    t = min(abs(value) / scale, 1.0)
    rgb = _lerp(_NEUTRAL, _POSITIVE if value >= 0 else _NEGATIVE, t)
    return Style(bgcolor=Color.from_rgb(*rgb), color="white" if t < 0.75 else "black")


def sequential(value: float | None, scale: float) -> Style | None:
    """Background for a non-negative quantity (entropy, KL), saturating at `scale`."""
    if value is None or not math.isfinite(value) or scale <= 0:
        return None
    t = min(max(value / scale, 0.0), 1.0)
    rgb = _lerp(_SEQUENTIAL[0], _SEQUENTIAL[1], 2 * t) if t < 0.5 else _lerp(
        _SEQUENTIAL[1], _SEQUENTIAL[2], 2 * t - 1
    )
    return Style(bgcolor=Color.from_rgb(*rgb), color="white")


MONO_GREYS = (240, 40, 200, 80, 160, 120, 220, 60)
"""Grey backgrounds for categories under NO_COLOR, in use order: the Okabe-Ito colours turn
into four near-identical greys there (luminance 150-162), so categories get their own levels:
the first six 40 apart (30 after a 256-colour terminal's quantisation), all eight 20 apart;
text is black on light, bold white on dark."""


def categorical(index: int | None, mono: bool = False) -> Style | None:
    """Background of a category (best teacher per token); `mono`: the NO_COLOR grey levels."""
    if index is None or index < 0:
        return None
    if mono:
        level = MONO_GREYS[index % len(MONO_GREYS)]
        return Style(bgcolor=Color.from_rgb(level, level, level),
                     color="black" if level >= 128 else "white", bold=level < 128)
    rgb = CATEGORICAL[index % len(CATEGORICAL)]
    return Style(bgcolor=Color.from_rgb(*rgb), color="black")


def marker_glyph(label: str | None) -> str:
    """Colour-independent marker appended to significant tokens: helps ⁺, hurts ⁻."""
    return {"helps": "⁺", "hurts": "⁻"}.get(label or "", "")


def quantile_scale(values: list[float], q: float = 0.95) -> float:
    """Colour scale: the q-quantile of |values|, so one outlier does not wash out the rest."""
    finite = sorted(abs(v) for v in values if v is not None and math.isfinite(v))
    if not finite:
        return 1.0
    k = min(len(finite) - 1, max(0, math.ceil(q * len(finite)) - 1))
    return finite[k] or finite[-1] or 1.0


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(counts: list[int]) -> str:
    """Unicode block sparkline of histogram counts (empty bins drawn as a space)."""
    top = max(counts, default=0)
    if top <= 0:
        return " " * len(counts)
    return "".join(
        " " if c == 0 else SPARK[min(len(SPARK) - 1, (c * len(SPARK) - 1) // top)] for c in counts
    )


def fmt(value: float | None, digits: int = 3, signed: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "∅"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def compact(value: float | None) -> str:
    """Short signed number for dense tables: +.42, -.071, +.0013 (two significant digits)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "∅"
    if value == 0:
        return "0"
    text = f"{value:+.2f}" if abs(value) >= 0.095 else f"{value:+.2g}"
    if "e" in text:
        return text
    return text.replace("0.", ".", 1) if abs(value) < 1 else text


def fmt_fixed(mean: float | None, lo: float | None = None, hi: float | None = None,
              digits: int = 2) -> str:
    """Mean [and interval] at a fixed precision, leading zeros dropped: +.05[-.02,.11]. Aligned
    columns of headline tables read better than `compact`'s significant digits."""
    def one(x: float, signed: bool) -> str:
        if x == 0:
            return "0"
        text = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
        if float(text) == 0:  # -0.004 at one decimal: no sign on a rounded zero
            text = text.lstrip("+-")
        return text.replace("0.", ".", 1) if abs(x) < 1 else text

    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "∅"
    if lo is None or hi is None or any(isinstance(v, float) and math.isnan(v) for v in (lo, hi)):
        return one(mean, True)
    return f"{one(mean, True)}[{one(lo, False)},{one(hi, False)}]"


def fmt_interval(mean: float | None, lo: float | None, hi: float | None) -> str:
    """Mean with its 5-95% interval, compact: +.40[.30,.52]."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "∅"
    if lo is None or hi is None:
        return compact(mean)
    return f"{compact(mean)}[{compact(lo).lstrip('+')},{compact(hi).lstrip('+')}]"


def abbreviate(names: list[str], width: int) -> dict[str, str]:
    """Short labels of at most `width` cells that stay distinct (`q self_…` twice told the reader
    nothing): a name that fits is kept; otherwise every `_` segment but the last shrinks to its
    initial and the last is cut with an ellipsis (self_solution -> s_solut…); labels that still
    collide get a number instead of their tail."""
    def one(name: str) -> str:
        if cell_len(name) <= width:
            return name
        *head, last = name.split("_")
        short = "_".join([h[:1] for h in head] + [last])
        return short if len(short) <= width else short[: width - 1] + "…"

    out = {n: one(n) for n in names}
    seen: dict[str, int] = {}
    for n in names:
        seen[out[n]] = seen.get(out[n], 0) + 1
    number = 0  # one counter for every collision: numbered labels cannot collide again
    for n in names:
        if seen[out[n]] > 1:
            number += 1
            tag = str(number)
            out[n] = out[n][: max(width - len(tag) - 1, 0)] + "…" + tag
    return out
