"""Overview: the run at a glance and the headline table per teacher x correctness."""

from __future__ import annotations

from typing import Any

from rich.box import SIMPLE_HEAD
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.containers import ScrollableContainer
from textual.widgets import Static

from opd_tui import actions
from opd_tui.queries import HIST_BINS, headline_query, histogram_query, histograms
from opd_tui.render import fmt, fmt_interval, safe_text, sparkline
from opd_tui.screens.base import OpdScreen


class OverviewScreen(OpdScreen):
    scope = "overview"
    BINDINGS = actions.bindings("overview")
    DEFAULT_CSS = """
    OverviewScreen #overview { height: 1fr; }
    OverviewScreen #overview > Static { width: auto; }
    """
    HELP = ("The run's configuration and the headline table for the selected signal: mean "
            "alignment (plain and beyond sharpening), gain and teacher advantage with 90% "
            "question-bootstrap intervals, split by rollout correctness. Controls are set apart: "
            "they are the baseline a teacher must beat. Enter opens the question list.")

    def compose(self):  # type: ignore[no-untyped-def]
        with ScrollableContainer(id="overview"):
            yield Static(id="config")
            yield Static(Text("loading…", "dim"), id="headline")
            yield Static(id="histogram")
        yield from self.compose_chrome()

    def on_mount(self) -> None:
        self.query_one("#config", Static).update(self._config())
        self.selection_changed()

    def _config(self) -> Text:
        info = self.opd.info
        lines = Text()
        lines.append(f"{safe_text(str(self.opd.db.path))}\n", "bold")
        lines.append(f"student {safe_text(info.student)}   nodes {info.node_strategy}   "
                     f"signals {', '.join(info.signals)}\n")
        for row in info.teachers:
            kind = "control" if row["is_control"] else row["kind"]
            lines.append(f"  {row['teacher']:<16} {kind:<8} T={fmt(row['temperature'], 1, False)}"
                         f"  {safe_text(row['description'] or '', 60)}\n")
        c = info.counts
        acc = "∅" if info.accuracy is None else f"{info.accuracy:.1%}"
        lines.append(f"{c['questions']:,} questions  {c['rollouts']:,} rollouts  "
                     f"{c['tokens']:,} tokens  {c['nodes']:,} probed nodes  accuracy {acc}")
        for warning in info.warnings:  # bold + a word, not only red: NO_COLOR must see it too
            lines.append("\n")
            lines.append("WARNING ", "bold reverse red")
            lines.append(safe_text(warning), "bold red")
        return lines

    def selection_changed(self) -> None:
        super().selection_changed()
        signal = self.opd.signal
        head, hist = headline_query(signal), histogram_query(signal)
        self.queries = [head, hist]
        # two loads: the headline reads a small summary table and paints at once; the histogram
        # scans `scores` and follows
        self.load("headline", head.rows, self._show_headline,
                  lambda e: self.query_one("#headline", Static).update(Text(str(e), "red")))
        self.load("histogram", hist.rows, self._show_histogram)

    def _show_headline(self, frame: list[dict[str, Any]]) -> None:
        self.query_one("#headline", Static).update(headline_table(frame, self.opd.signal))

    def _show_histogram(self, hist: list[dict[str, Any]]) -> None:
        counts = histograms(hist)
        text = Text(f"alignment cos(g,d) histogram, {self.opd.signal}, bins over [-1, 1]\n",
                    "bold")
        for teacher in self.opd.info.teacher_names:
            text.append(f"  {teacher:<16} -1 ")
            text.append(sparkline(counts.get(teacher, [0] * HIST_BINS)), "cyan")
            text.append(" +1\n")
        self.query_one("#histogram", Static).update(text)

    def action_open_questions(self) -> None:
        self.opd.open_questions()


def headline_table(frame: list[dict[str, Any]], signal: str) -> Group:
    """Two tables that each fit 80 columns: alignment with label shares, then gain/advantage."""
    align = _table(f"alignment, signal {signal}: mean[5%,95%] over a bootstrap of questions",
                   ("cos", "beyond", "+/-/0 %", "n", "∅%"))
    effect = _table("effect size: gain <g,d> and teacher advantage", ("gain", "advantage"))
    was_control = False
    for row in frame:
        if row["is_control"] and not was_control:
            align.add_section()
            effect.add_section()
            was_control = True
        cells = _cells(row)
        align.add_row(*cells[:2], cells[2], cells[3], *cells[6:])
        effect.add_row(*cells[:2], cells[4], cells[5])
    notes = Text("on: inc/cor = incorrect/correct rollouts. Below the line, in italics: the "
                 "controls, the baseline a teacher must beat. beyond = alignment beyond "
                 "sharpening (exact split for rkl only).", "dim")
    if not frame:
        notes = Text("no summaries yet (a live run gets them at merge)", "dim")
    return Group(align, effect, notes)


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", padding=(0, 1),
                  box=SIMPLE_HEAD)
    for col in ("teacher", "on", *columns):
        table.add_column(col, justify="left" if col in ("teacher", "on") else "right",
                         no_wrap=True)
    return table


def _cells(row: dict[str, Any]) -> list[str | Text]:
    shares = "/".join("∅" if row[k] is None else f"{100 * row[k]:.0f}"
                      for k in ("helps", "hurts", "neutral"))
    return [
        Text(row["teacher"], "italic" if row["is_control"] else "bold"),
        row["correctness"][:3],
        fmt_interval(row["cos"], row["cos_lo"], row["cos_hi"]),
        fmt_interval(row["beyond"], row["beyond_lo"], row["beyond_hi"]),
        fmt_interval(row["gain"], row["gain_lo"], row["gain_hi"]),
        fmt_interval(row["advantage"], row["advantage_lo"], row["advantage_hi"]),
        shares,
        "∅" if row["n"] is None else f"{row['n']:,}",
        "∅" if row["null_share"] is None else f"{row['null_share']:.0%}",
    ]
