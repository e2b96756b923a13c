"""Plots of the console's WHOLE result, computed in DuckDB, drawn with plotext.

The grid holds only a window of rows, so a plot of resident rows would silently describe a prefix
of the result. Every plot here wraps the user's query as a subquery and lets DuckDB aggregate all
of it: a histogram counts every finite value into fixed bins, a scatter draws distinct (x, y)
points (a deterministic hash-ordered sample when there are too many), and a by-position plot
draws one line of per-position means. Points of different rollouts are never joined by a line.
`compute_plot` runs in a worker thread; `PlotScreen` only draws the small result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
from textual.app import ComposeResult
from textual.screen import ModalScreen
from textual_plotext import PlotextPlot

from engine.runfile.sql import sql_ident
from opd_tui import actions
from opd_tui.clipboard import copy

HIST_BINS = 30
MAX_SCATTER_POINTS = 5_000
MAX_POSITIONS = 10_000
KEY_COLUMNS = ("question_id", "rollout", "pos")
KINDS = {
    "hist": "Histogram of one column",
    "scatter": "Scatter of two columns (points, never joined)",
    "by_pos": "Mean of a column by position (one line)",
}


@dataclass(frozen=True)
class PlotRequest:
    """What to plot. hist: `x` is the column; scatter: `x` against `y`; by_pos: the mean of `y`
    for each value of the integer column `x`."""

    kind: str
    x: str
    y: str | None = None


@dataclass
class PlotData:
    """A computed plot: the drawn series plus how many rows of the result it covers."""

    kind: str
    title: str
    xlabel: str
    ylabel: str
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    rows: int = 0
    """Rows of the whole result."""
    used: int = 0
    """Rows that went into the plot (finite values; for a scatter, before de-duplication)."""
    bin_width: float | None = None

    def tsv(self) -> str:
        """The plotted numbers as TSV (what `y` copies), headed by the title."""
        lines = [f"# {self.title}", f"{self.xlabel}\t{self.ylabel}"]
        lines += [f"{x!r}\t{y!r}" for x, y in zip(self.xs, self.ys, strict=True)]
        return "\n".join(lines)


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def numeric_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if _is_numeric(f.type)]


def integer_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_integer(f.type)]


def default_request(schema: pa.Schema, kind: str) -> PlotRequest | None:
    """Sensible columns for `kind`: value columns before the token key columns; None when the
    result has nothing to plot that way."""
    numeric = numeric_columns(schema)
    values = [n for n in numeric if n not in KEY_COLUMNS] or numeric
    if not values:
        return None
    if kind == "hist":
        return PlotRequest("hist", values[0])
    if kind == "scatter":
        pair = values if len(values) >= 2 else numeric
        return PlotRequest("scatter", pair[0], pair[1]) if len(pair) >= 2 else None
    ints = integer_columns(schema)
    positions = (["pos"] if "pos" in ints else []) + [n for n in ints if n != "pos"]
    for x in positions:
        y = next((v for v in values if v != x), None)
        if y is not None:
            return PlotRequest("by_pos", x, y)
    return None


def _num(x: float) -> str:
    """A float as an exact DuckDB DOUBLE (a bare `0.1` would be a DECIMAL literal)."""
    return f"'{x!r}'::DOUBLE"


def wrap(sql: str) -> str:
    """The user's statement as a subquery; newlines keep a trailing `--` comment inside."""
    return f"(\n{sql}\n) AS _result"


def compute_plot(cur: duckdb.DuckDBPyConnection, sql: str, req: PlotRequest,
                 *, integer_x: bool = False) -> PlotData:
    """Aggregate the whole result of `sql` for `req` (`integer_x`: the hist column is an
    integer type, so a narrow range gets one bin per value)."""
    if req.kind == "hist":
        return _histogram(cur, sql, req.x, integer_x)
    if req.kind == "scatter":
        assert req.y is not None
        return _scatter(cur, sql, req.x, req.y)
    if req.kind == "by_pos":
        assert req.y is not None
        return _by_position(cur, sql, req.x, req.y)
    raise ValueError(f"unknown plot kind {req.kind!r}")


def _histogram(cur: duckdb.DuckDBPyConnection, sql: str, col: str, integer: bool) -> PlotData:
    values = f"(SELECT CAST({sql_ident(col)} AS DOUBLE) AS v FROM {wrap(sql)})"
    row = cur.execute(
        "SELECT count(*), count(*) FILTER (WHERE isfinite(v)), min(v) FILTER (WHERE isfinite(v)),"
        f" max(v) FILTER (WHERE isfinite(v)) FROM {values}").fetchone()
    assert row is not None
    rows, finite, lo, hi = int(row[0]), int(row[1]), row[2], row[3]
    dropped = rows - finite
    title = f"histogram of {col} · {rows:,} rows"
    if dropped:
        title += f" ({dropped:,} NULL/NaN/inf not counted)"
    data = PlotData("hist", title, col, "rows", rows=rows, used=finite)
    if not finite:
        data.title = f"histogram of {col}: no finite values in {rows:,} rows"
        return data
    if integer and hi - lo + 1 <= HIST_BINS:
        bins, width, edge = int(hi - lo) + 1, 1.0, lo - 0.5
    elif hi == lo:
        bins, width, edge = 1, 1.0, lo - 0.5
    else:
        bins, width, edge = HIST_BINS, (hi - lo) / HIST_BINS, lo
    counts = dict(cur.execute(
        f"SELECT greatest(0, least(CAST(floor((v - {_num(edge)}) / {_num(width)}) AS BIGINT), "
        f"{bins - 1})) AS b, count(*) FROM {values} WHERE isfinite(v) GROUP BY b ORDER BY b"
    ).fetchall())
    data.xs = [edge + (b + 0.5) * width for b in range(bins)]
    data.ys = [float(counts.get(b, 0)) for b in range(bins)]
    data.bin_width = width
    return data


def _scatter(cur: duckdb.DuckDBPyConnection, sql: str, xcol: str, ycol: str) -> PlotData:
    pairs = (f"(SELECT CAST({sql_ident(xcol)} AS DOUBLE) AS x, "
             f"CAST({sql_ident(ycol)} AS DOUBLE) AS y "
             f"FROM {wrap(sql)})")
    row = cur.execute("SELECT count(*), count(*) FILTER (WHERE isfinite(x) AND isfinite(y)) "
                      f"FROM {pairs}").fetchone()
    assert row is not None
    rows, used = int(row[0]), int(row[1])
    # distinct points, then the first N in hash order: deterministic for the same data, and a
    # value repeated 10^5 times cannot crowd out the rest (a scatter cannot show repeats anyway)
    points = cur.execute(
        f"WITH p AS (SELECT DISTINCT x, y FROM {pairs} WHERE isfinite(x) AND isfinite(y)) "
        "SELECT x, y, count(*) OVER () FROM p ORDER BY hash(x, y), x, y "
        f"LIMIT {MAX_SCATTER_POINTS}").fetchall()
    distinct = int(points[0][2]) if points else 0
    shown = (f"all {distinct:,} distinct points" if distinct <= MAX_SCATTER_POINTS
             else f"{len(points):,} of {distinct:,} distinct points (hash sample)")
    title = f"{ycol} against {xcol} · {rows:,} rows, {shown}"
    if used < rows:
        title += f", {rows - used:,} rows with NULL/NaN/inf left out"
    return PlotData("scatter", title, xcol, ycol, [float(p[0]) for p in points],
                    [float(p[1]) for p in points], rows=rows, used=used)


def _by_position(cur: duckdb.DuckDBPyConnection, sql: str, xcol: str, ycol: str) -> PlotData:
    row = cur.execute(f"SELECT count(*) FROM {wrap(sql)}").fetchone()
    assert row is not None
    rows = int(row[0])
    groups = cur.execute(
        f"SELECT p, avg(v), count(*) FROM (SELECT {sql_ident(xcol)} AS p, "
        f"CAST({sql_ident(ycol)} AS DOUBLE) AS v FROM {wrap(sql)}) "
        f"WHERE p IS NOT NULL AND isfinite(v) GROUP BY p ORDER BY p LIMIT {MAX_POSITIONS + 1}"
    ).fetchall()
    cut = len(groups) > MAX_POSITIONS
    groups = groups[:MAX_POSITIONS]
    used = sum(int(g[2]) for g in groups)
    title = f"mean of {ycol} by {xcol} · {rows:,} rows, {len(groups):,} {xcol} values"
    if cut:
        title += f" (first {MAX_POSITIONS:,} only)"
    elif used < rows:
        title += f", {rows - used:,} rows with NULL/NaN/inf left out"
    return PlotData("by_pos", title, xcol, f"mean {ycol}", [float(g[0]) for g in groups],
                    [float(g[1]) for g in groups], rows=rows, used=used)


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


class PlotScreen(ModalScreen[None]):
    """Draws a computed `PlotData`; q/Esc close, y copies the plotted numbers as TSV."""

    scope = "modal"
    DEFAULT_CSS = "PlotScreen { align: center middle; } PlotextPlot { width: 90%; height: 80%; }"
    BINDINGS = actions.bindings("modal")

    def __init__(self, data: PlotData) -> None:
        super().__init__()
        self.data = data

    def compose(self) -> ComposeResult:
        yield PlotextPlot()

    def on_mount(self) -> None:
        plt = self.query_one(PlotextPlot).plt
        data = self.data
        plt.title(data.title)
        plt.xlabel(data.xlabel)
        plt.ylabel(data.ylabel)
        if not data.xs:
            return
        if data.kind == "hist":
            assert data.bin_width is not None
            plt.bar(data.xs, data.ys, width=1.0)
            lo = data.xs[0] - data.bin_width / 2
            ticks = _ticks(lo, data.xs[-1] + data.bin_width / 2)
            plt.xticks(ticks, [f"{t:.4g}" for t in ticks])
        elif data.kind == "scatter":
            plt.scatter(data.xs, data.ys)
        else:
            plt.plot(data.xs, data.ys)

    def action_copy(self) -> None:
        copy(self.app, self.data.tsv(), "plot data (TSV)")
