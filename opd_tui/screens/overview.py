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
from opd_tui.render import fmt, fmt_fixed, safe_text, sparkline
from opd_tui.screens.base import OpdScreen


class OverviewScreen(OpdScreen):
    scope = "overview"
    BINDINGS = actions.bindings("overview")
    DEFAULT_CSS = """
    OverviewScreen #overview { height: 1fr; }
    OverviewScreen #overview > Static { width: auto; }
    """
    HELP = ("The run's configuration and the headline tables for the selected signal (s), "
            "split by rollout correctness, with 90% question-bootstrap intervals. Headline: the "
            "edge over the sharpened student, edge = cos(g,d) - cos(g,d_sharp): the alignment a "
            "teacher earns beyond what the student would get by confidence alone, in [-2, 2] "
            "(0: no better than sharpening; the sharpened control is 0 by construction). First "
            "at decisive nodes (stakes >= tau: success differs between the tokens anyone would "
            "pick), where helps / hurts labels live, with their shares of the labelled nodes "
            "and that denominator; then over every probed node with signal, next to the plain "
            "cosine (inflated by sharpening) and beyond sharpening (secondary, often undefined); "
            "then effect sizes (gain, teacher advantage) at decisive nodes. Controls come last: "
            "the baseline a teacher must beat. Enter opens the question list.")

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
        info = self.opd.info
        self.query_one("#headline", Static).update(
            headline_table(frame, self.opd.signal, info.rules.get("tau_stakes", 0.1),
                           info.rules.get("epsilon", 0.05), info.sharpened_temperature))

    def _show_histogram(self, hist: list[dict[str, Any]]) -> None:
        counts = histograms(hist)
        text = Text(f"\nedge histogram at decisive nodes, {self.opd.signal}, {HIST_BINS} bins "
                    "over [-2, 2]\n", "bold")
        for teacher in self.opd.info.teacher_names:
            text.append(f"  {teacher:<16} -2 ")
            text.append(sparkline(counts.get(teacher, [0] * HIST_BINS)), "cyan")
            text.append(" +2\n")
        self.query_one("#histogram", Static).update(text)

    def action_open_questions(self) -> None:
        self.opd.open_questions()


def headline_table(frame: list[dict[str, Any]], signal: str, tau: float = 0.1,
                   epsilon: float = 0.05, sharpened_t: str = "0.5") -> Group:
    """Three tables that each fit 80 columns: edge and cosine at decisive nodes with the label
    shares, edge and cosine over all nodes, effect sizes at decisive nodes; then the notes."""
    ci = "mean[5%,95%]"
    decisive = _table(f"decisive nodes (stakes >= {tau:g}), signal {signal}: {ci}",
                      ("n", "edge", "cos", "+/-/0 %"))
    every = _table(f"all probed nodes with signal, {signal}: {ci}", ("n", "∅%", "edge", "cos"))
    effect = _table("effect at decisive nodes (pp of success); beyond: all nodes",
                    ("gain", "advantage", "beyond", "∅%"))
    was_control = False
    for row in frame:
        if row["is_control"] and not was_control:
            for table in (decisive, every, effect):
                table.add_section()
            was_control = True
        name = Text(row["teacher"], "italic" if row["is_control"] else "bold")
        on = row["correctness"][:3]
        decisive.add_row(name, on, _count(row["n_labelled"]), _interval(row, "edge_dec"),
                         _interval(row, "cos_dec"), _shares(row))
        every.add_row(name, on, _count(row["n_all"]), _percent(row["null_share_all"]),
                      _interval(row, "edge_all"), _interval(row, "cos_all"))
        effect.add_row(name, on, _interval(row, "gain_dec", 100.0),
                       _interval(row, "advantage_dec", 100.0), fmt_fixed(row["beyond_all"]),
                       _percent(row["null_share_beyond"]))
    if not frame:
        return Group(Text("no summaries yet (a live run gets them at merge)", "dim"))
    reference = ("h, the pull of the student sharpened to any T < 1" if signal == "rkl" else
                 f"the {signal} pull toward the student sharpened to T={sharpened_t}")
    notes = Text(
        f"edge = cos(g,d) - cos(g,d_sharp), d_sharp = {reference}: what a teacher's pull earns "
        "beyond what confidence alone would, in [-2, 2]; 0 = no better than sharpening (the "
        "sharpened control is 0 by construction). Decisive: success differs by at least "
        f"{tau:g} between the tokens the student or a teacher finds plausible; only there a "
        f"token helps (+) or hurts (-): its edge interval lies beyond +-{epsilon:g}. "
        "+/-/0 % = helps/hurts/neutral shares of the n labelled decisive nodes. Effect: gain "
        "<g,d> and teacher advantage, in percentage points of success. cos = plain "
        "alignment (sharpening inflates it); beyond = alignment beyond sharpening, secondary: "
        "NULL (∅%) where the projection leaves too little of g or d. inc/cor = "
        "incorrect/correct rollouts. Below the line, in italics: the controls, the baseline a "
        "teacher must beat.", "dim")
    return Group(decisive, every, effect, notes)


def _table(title: str, columns: tuple[str, ...]) -> Table:
    # no edge padding: the widest table must fit 80 columns
    table = Table(title=title, title_justify="left", header_style="bold", padding=(0, 1),
                  box=SIMPLE_HEAD, pad_edge=False)
    for col in ("teacher", "on", *columns):
        table.add_column(col, justify="left" if col in ("teacher", "on") else "right",
                         no_wrap=True)
    return table


def _interval(row: dict[str, Any], prefix: str, unit: float = 1.0) -> str:
    """Scores in two decimals (alignment units); gain and advantage (`unit` 100) in
    percentage points with one."""
    values = [None if row[k] is None else unit * row[k]
              for k in (prefix, f"{prefix}_lo", f"{prefix}_hi")]
    return fmt_fixed(*values, digits=2 if unit == 1.0 else 1)


def _count(n: int | None) -> str:
    return "∅" if n is None else f"{n:,}"


def _percent(share: float | None) -> str:
    return "∅" if share is None else f"{share:.0%}"


def _shares(row: dict[str, Any]) -> str:
    return "/".join("∅" if row[k] is None else f"{100 * row[k]:.0f}"
                    for k in ("helps", "hurts", "neutral"))
