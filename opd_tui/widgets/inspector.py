"""Token inspector: why the cursor token helps or hurts, from the node's stored quantities."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.containers import ScrollableContainer
from textual.widgets import Static

from opd_tui.queries import NodeDetail
from opd_tui.render import compact, fmt, fmt_interval, safe_text, visible_token

LABEL_STYLE = {"helps": "bold blue", "hurts": "bold red", "neutral": "dim"}


def _label(label: str | None) -> Text:
    return Text(label or "∅", style=LABEL_STYLE.get(label or "", "dim"))


def _short(name: str, width: int = 8) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def node_renderable(detail: NodeDetail, teachers: list[str], show_texts: bool) -> RenderableType:
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
    parts.append(Text(
        f"V̂ {fmt(node.get('v_hat'), 3, signed=False)}   value change "
        f"{fmt(node.get('value_change'))}   m_s {fmt(node.get('m_s'), 2, signed=False)}   "
        f"|C| {node.get('n_candidates')}  N {node.get('n_cont')}\n"
        f"best teacher {node.get('best_teacher') or '∅'} (p {fmt(node.get('best_prob'), 2, False)})"
        + (f"   NULL: {node.get('null_reason')}" if node.get("null_reason") else "")
    ))
    cands = Table(title="candidates", title_justify="left", expand=False, padding=(0, 1),
                  box=None, header_style="bold")
    for col in ("tok", "p", *(f"q {_short(t, 6)}" for t in teachers), "S [5%,95%]", "N", "g"):
        cands.add_column(col, justify="left" if col == "tok" else "right", no_wrap=True)
    for row in detail.candidates.iter_rows(named=True):
        tok = Text(("▸" if row["is_sampled"] else " ") + visible_token(row["token_text"], None,
                                                                        max_cells=12))
        qs = [fmt(row.get(f"q_{t}"), 3, False) for t in teachers]
        cands.add_row(
            tok, fmt(row["p"], 3, False), *qs,
            f"{fmt(row['s_hat'], 2, False)} [{fmt(row['s_lo'], 2, False)},"
            f"{fmt(row['s_hi'], 2, False)}]",
            str(row["n"]), fmt(row["g"], 3),
        )
    parts.append(cands)
    scores = Table(title="alignment per teacher x signal (beyond: exact split for rkl only)",
                   title_justify="left", box=None, padding=(0, 1), header_style="bold")
    for col in ("teacher", "sig", "cos [5,95]", "", "beyond [5,95]", "", "gain", "adv"):
        scores.add_column(col, justify="left" if col in ("teacher", "sig", "") else "right",
                          no_wrap=True)
    was_control = False
    for row in detail.scores.iter_rows(named=True):
        if row["is_control"] and not was_control:
            scores.add_section()
            was_control = True
        name = _short(row["teacher"], 12) + (" ctl" if row["is_control"] else "")
        scores.add_row(
            name, row["signal"],
            fmt_interval(row["cos"], row["cos_lo"], row["cos_hi"]), _label(row["label"]),
            fmt_interval(row["beyond"], row["beyond_lo"], row["beyond_hi"]),
            _label(row["label_beyond"]), compact(row["gain"]), compact(row["advantage"]),
        )
    parts.append(scores)
    proxies = Table(title="proxies (controls = baseline)", title_justify="left", box=None,
                    padding=(0, 1), header_style="bold")
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
    parts.append(proxies)
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


class Inspector(ScrollableContainer):
    """Scrollable panel holding the rendering of the cursor token's node."""

    DEFAULT_CSS = """
    Inspector { width: 1fr; min-width: 30; border-left: solid $primary-darken-2; }
    Inspector > Static { width: 100; }
    """

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(Text("loading…", "dim"), id="inspector-body")

    def show(self, renderable: RenderableType) -> None:
        self.query_one("#inspector-body", Static).update(renderable)
