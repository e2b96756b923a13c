"""Token inspector: why the cursor token helps or hurts, from the node's stored quantities."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from textual.containers import ScrollableContainer
from textual.widgets import Static

from opd_tui.queries import NodeDetail
from opd_tui.render import (
    abbreviate,
    compact,
    fmt,
    fmt_fixed,
    marker_glyph,
    safe_text,
    visible_token,
)

LABEL_STYLE = {"helps": "bold blue", "hurts": "bold red", "neutral": "dim"}


def _label(label: str | None) -> Text:
    return Text(label or "∅", style=LABEL_STYLE.get(label or "", "dim"))


def _short(name: str, width: int = 8) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _title(text: str) -> Text:
    """A table title as its own line: it wraps at the panel's width, not the table's."""
    return Text(text, "bold")


def _table() -> Table:
    return Table(box=None, padding=(0, 1, 0, 0), header_style="bold", expand=False)


def _level(levels: dict[str, float] | None, key: str, default: float) -> str:
    return f"{100 * (levels or {}).get(key, default):.0f}%"


def _stakes_line(node: dict[str, Any], rules: dict[str, float]) -> Text:
    """Stakes with its interval, and whether the node is decisive (labels need it)."""
    tau = rules.get("tau_stakes", 0.1)
    line = Text("stakes ")
    stakes, lo, hi = node.get("stakes"), node.get("stakes_lo"), node.get("stakes_hi")
    line.append(_prob(stakes) + ("" if stakes is None or lo is None or hi is None
                                 else f"[{_prob(lo)},{_prob(hi)}]"), "bold")
    decisive = node.get("decisive")
    if decisive is None:
        line.append("  decisive ∅", "dim")
    elif decisive:
        line.append(f"  DECISIVE (>= {tau:g})", "bold")
    else:
        line.append(f"  not decisive (< {tau:g}): no helps/hurts here", "dim")
    n_plausible = node.get("n_plausible")
    line.append(f"   |C+| {'∅' if n_plausible is None else n_plausible}")
    return line


def _best_line(node: dict[str, Any]) -> Text:
    """The confident best teacher with its draw share and margin, or why there is none."""
    line = Text("best teacher ")
    prob = f"p {fmt(node.get('best_prob'), 2, False)}, margin {fmt(node.get('best_margin'), 2)}"
    if node.get("best_teacher"):
        line.append(str(node["best_teacher"]), "bold")
        line.append(f" ({prob})")
    elif node.get("best_reason"):
        line.append("∅", "dim")
        line.append(f" ({node['best_reason']}", "italic")
        line.append(f"; leader {prob})" if node.get("best_prob") is not None else ")")
    elif node.get("null_reason"):
        line.append(f"∅ ({node['null_reason']})", "dim")
    else:
        line.append("∅", "dim")
    return line


def _s_of(row: dict[str, Any]) -> str:
    return f"S({visible_token(row['token_text'], None, max_cells=10)}) = " + (
        f"{row['s']}/{row['n']}" if row["n"] is not None else "∅")


def why_line(detail: NodeDetail, teacher: str | None, signal: str | None,
             rules: dict[str, float] | None = None) -> Text | None:
    """One line that says why the token matters for the selected teacher: the sampled token's
    success against the best alternative's, where the teacher puts its mass, and the verdict
    (e.g. `S(9) = 0/12 vs S(8) = 11/12; strong puts .999 on 9 → edge -.97 hurts`)."""
    rows = list(detail.candidates.iter_rows(named=True)) if detail.candidates.height else []
    sampled = next((r for r in rows if r["is_sampled"]), None)
    if sampled is None:
        return None
    line = Text("why: ", "bold")
    line.append(_s_of(sampled))
    others = [r for r in rows if not r["is_sampled"] and r["s_hat"] is not None]
    if others:
        alt = max(others, key=lambda r: (r["s_hat"], r["p"] or 0.0))
        line.append(f" vs {_s_of(alt)}")
    column = f"q_{teacher}"
    if teacher and rows and column in rows[0]:
        top = max(rows, key=lambda r: r.get(column) or 0.0)
        if top.get(column) is not None:
            line.append(f"; {teacher} puts {_prob(top[column])} on "
                        f"{visible_token(top['token_text'], None, max_cells=10)}")
    score = next((r for r in detail.scores.iter_rows(named=True)
                  if r["teacher"] == teacher and r["signal"] == signal), None) if (
        detail.scores.height) else None
    decisive = detail.node.get("decisive")
    if score is not None and score["edge"] is not None:
        line.append(f" → edge {fmt_fixed(score['edge'])} ")
        line.append_text(_label(score["label_edge"]) if decisive else Text(
            f"not decisive (stakes {_prob(detail.node.get('stakes'))} < "
            f"{(rules or {}).get('tau_stakes', 0.1):g})", "dim"))
    elif score is not None:
        line.append(f" → edge ∅ ({score['null_reason'] or 'no value'})", "dim")
    return line


def node_renderable(detail: NodeDetail, teachers: list[str], show_texts: bool,
                    rules: dict[str, float] | None = None,
                    levels: dict[str, float] | None = None,
                    teacher: str | None = None, signal: str | None = None,
                    width: int | None = None) -> RenderableType:
    """Everything stored about the cursor token's node, laid out to fit ~80 columns.

    `teachers` name the q columns of the candidate table (the non-control ones: they decide
    C+); `rules` and `levels` are meta score_rules and interval_levels (RunInfo); `teacher` and
    `signal` (the selection) are what the one-line "why" speaks of; `width` is the panel's, under
    which the candidate table splits in two rather than cut its cells to `.…`."""
    rules = rules or {}
    node: dict[str, Any] = detail.node
    token = visible_token(node.get("token_text"), max_cells=40)
    head = Text.assemble(
        (f"pos {detail.pos} ", "bold"), (token, "reverse"),
        f"  id {node.get('token_id')}  log p {fmt(node.get('logp'), 2)}"
        f"  H {fmt(node.get('entropy'), 2, signed=False)}",
    )
    if detail.candidates.is_empty():
        return Group(head, Text("not probed: no candidates or scores at this token", "dim"))
    parts: list[RenderableType] = [head]
    why = why_line(detail, teacher, signal, rules)
    if why is not None:
        parts.append(why)
    parts.append(Text(
        f"V̂ {fmt(node.get('v_hat'), 3, signed=False)}   value change "
        f"{fmt(node.get('value_change'))}   m_s {fmt(node.get('m_s'), 2, signed=False)}   "
        f"|C| {node.get('n_candidates')}  N {node.get('n_cont')}"
        + (f"   NULL: {node.get('null_reason')}" if node.get("null_reason") else "")
    ))
    parts.append(_stakes_line(node, rules))
    parts.append(_best_line(node))
    rho = rules.get("rho", 0.05)
    parts += [
        _title("candidates (▸ sampled; C+ +: plausible, the set stakes spreads over)"),
        *_candidate_tables(detail, teachers, levels, width),
        _title("edge = cos - cos_sharp per teacher x signal (labels only at decisive nodes; "
               "cos ⁺/⁻: its own label; controls in italics, last)"),
        _scores(detail, levels),
        _title(f"beyond sharpening (secondary): needs |Pg|²/|g|² and |Pd|²/|d|² >= {rho:g}; "
               f"here |Pg|²/|g|² = {fmt(node.get('g_residual_share'), 3, False)}"),
        _beyond(detail),
        _title("proxies (controls = baseline)"),
        _proxies(detail),
    ]
    if show_texts:
        for row in detail.candidates.iter_rows(named=True):
            tok = visible_token(row["token_text"], None, max_cells=16)
            parts.append(Text(f"── {tok}  success:", style="bold"))
            parts.append(Text(safe_text(row["text_success"], 600), style="blue"))
            parts.append(Text(f"── {tok}  failure:", style="bold"))
            parts.append(Text(safe_text(row["text_failure"], 600), style="red"))
    else:
        parts.append(Text("e: show kept continuation texts   p: teacher prompts", style="dim"))
    return Group(*parts)


def _prob(x: float | None) -> str:
    """A probability in two decimals without the leading zero: .92, 1.00, ∅."""
    if x is None:
        return "∅"
    if 0 < x < 0.01:  # below the plausibility threshold pi: do not round it up to .01
        return f"{x:.3f}"[1:]
    text = f"{x:.2f}"
    return text[1:] if text.startswith("0.") else text


def _candidates(detail: NodeDetail, teachers: list[str], levels: dict[str, float] | None,
                with_q: bool = True, with_s: bool = True, name_cells: int = 8) -> Table:
    """Token (▸ sampled), C+ mark, p, each teacher's q, S with interval and s/N, g."""
    cands = _table()
    short = abbreviate(teachers, name_cells)
    heads = ("tok", "C+", "p", *((f"q\n{short[t]}" for t in teachers) if with_q else ()),
             *((f"S [{_level(levels, 's', 0.9)}]", "s/N", "g") if with_s else ()))
    for col in heads:
        cands.add_column(col, justify="left" if col in ("tok", "C+") else "right", no_wrap=True)
    for row in detail.candidates.iter_rows(named=True):
        tok = Text(("▸" if row["is_sampled"] else " ") + visible_token(row["token_text"], None,
                                                                        max_cells=12))
        plausible = row.get("plausible")
        s_n = f"{row['s']}/{row['n']}" if row["n"] is not None else "∅"
        if row.get("deterministic"):
            s_n += " det"
        elif row.get("n_unverifiable"):
            s_n += f" +{row['n_unverifiable']}?"
        cands.add_row(
            tok, "∅" if plausible is None else ("+" if plausible else ""), _prob(row["p"]),
            *((_prob(row.get(f"q_{t}")) for t in teachers) if with_q else ()),
            *((f"{_prob(row['s_hat'])}[{_prob(row['s_lo'])},{_prob(row['s_hi'])}]",
               s_n, compact(row["g"])) if with_s else ()),
        )
    return cands


def natural_width(renderable: RenderableType) -> int:
    """Cells `renderable` takes unsqueezed (rich's maximum measurement)."""
    console = Console(width=1000, file=io.StringIO())
    return Measurement.get(console, console.options, renderable).maximum


def _candidate_tables(detail: NodeDetail, teachers: list[str], levels: dict[str, float] | None,
                      width: int | None) -> list[RenderableType]:
    """One table where it fits `width`; else success (S, s/N, g) and the teachers' q apart.
    No width (a copy to the clipboard): one table with the teachers' full names."""
    if width is None:
        return [_candidates(detail, teachers, levels,
                            name_cells=max(map(len, teachers), default=8))]
    whole = _candidates(detail, teachers, levels)
    if natural_width(whole) <= width:
        return [whole]
    return [_candidates(detail, teachers, levels, with_q=False),
            _title("each teacher's q of the candidates"),
            _candidates(detail, teachers, levels, with_s=False)]


def _teacher_cell(row: dict[str, Any]) -> Text:
    """Controls in italics below a section line (no colour needed: NO_COLOR keeps both)."""
    return Text(_short(row["teacher"], 14), "italic" if row["is_control"] else "")


def _controls_last(table: Table, detail: NodeDetail) -> Iterator[dict[str, Any]]:
    """The node's score rows (controls come last), with a section line before the controls."""
    was_control = False
    for row in detail.scores.iter_rows(named=True):
        if row["is_control"] and not was_control:
            table.add_section()
            was_control = True
        yield row


def _scores(detail: NodeDetail, levels: dict[str, float] | None) -> Table:
    """The headline per teacher x signal: edge with interval and label, then cos, gain, adv."""
    scores = _table()
    cols = ("teacher", "sig", f"edge [{_level(levels, 'edge', 0.95)}]", "label", "cos", "gain",
            "adv")
    for col in cols:
        scores.add_column(col, justify="left" if col in ("teacher", "sig", "label") else "right",
                          no_wrap=True)
    for row in _controls_last(scores, detail):
        scores.add_row(
            _teacher_cell(row), row["signal"],
            fmt_fixed(row["edge"], row["edge_lo"], row["edge_hi"]), _label(row["label_edge"]),
            fmt_fixed(row["cos"]) + marker_glyph(row["label"]), compact(row["gain"]),
            compact(row["advantage"]),
        )
    return scores


def _beyond(detail: NodeDetail) -> Table:
    """Beyond sharpening (secondary) with the residual shares that condition it, or why NULL."""
    table = _table()
    for col in ("teacher", "sig", "beyond", "label", "|Pd|²/|d|²", "NULL reason"):
        table.add_column(col, justify="right" if col in ("beyond", "|Pd|²/|d|²") else "left",
                         no_wrap=True)
    for row in _controls_last(table, detail):
        reason = row["null_reason"] if row["beyond"] is None else None
        table.add_row(
            _teacher_cell(row), row["signal"],
            fmt_fixed(row["beyond"], row["beyond_lo"], row["beyond_hi"]),
            _label(row["label_beyond"]), fmt(row["d_residual_share"], 3, False),
            Text(reason or "", "italic"),
        )
    return table


def _proxies(detail: NodeDetail) -> Table:
    proxies = _table()
    for col in ("teacher", "KL(p||q)", "H(q)", "teachab.", "rank y"):
        proxies.add_column(col, justify="left" if col == "teacher" else "right",
                           no_wrap=True)
    seen: set[str] = set()
    for row in detail.scores.iter_rows(named=True):
        if row["teacher"] in seen:
            continue
        seen.add(row["teacher"])
        proxies.add_row(_short(row["teacher"], 12), fmt(row["kl_pq"], 3, False),
                        fmt(row["teacher_entropy"], 2, False), fmt(row["teachability"], 2, False),
                        str(row["sampled_rank"]))
    return proxies


class Inspector(ScrollableContainer):
    """Scrollable panel holding the rendering of the cursor token's node."""

    DEFAULT_CSS = """
    Inspector { width: 1fr; min-width: 30; border-left: solid $primary-darken-2; }
    Inspector > Static { width: 100%; }
    """

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(Text("loading…", "dim"), id="inspector-body")

    def show(self, renderable: RenderableType) -> None:
        self.query_one("#inspector-body", Static).update(renderable)
