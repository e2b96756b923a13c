"""One question's rollouts: choose which to read, seeing at once which failed, where the first
decisive token is and which teacher pulls hardest the wrong way there."""

from __future__ import annotations

import polars as pl
from rich.text import Text
from textual.widgets import DataTable, Static

from opd_tui import actions
from opd_tui.queries import question_rollouts_query, question_text_query
from opd_tui.render import fmt, safe_text, visible_token
from opd_tui.screens.base import OpdScreen


class RolloutsScreen(OpdScreen):
    scope = "rollouts"
    BINDINGS = actions.bindings("rollouts")
    HELP = ("The question's rollouts, one row each: the verdict, the length, how many decisive "
            "nodes (stakes >= tau) it has and the first one (position and token), and for the "
            "selected signal the non-control teacher with the lowest mean edge at its decisive "
            "nodes, that edge and its hurt-labelled nodes. Enter opens the rollout at its first "
            "decisive token (or its first token).")
    DEFAULT_CSS = """
    RolloutsScreen #question { height: auto; max-height: 3; background: $boost; }
    RolloutsScreen DataTable { height: 1fr; }
    RolloutsScreen #completion { height: auto; max-height: 3; color: $text-muted; }
    """

    def __init__(self, question_id: str) -> None:
        super().__init__()
        self.question_id = question_id
        self.frame = pl.DataFrame()

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(id="question")
        yield DataTable(id="rollouts", cursor_type="row", zebra_stripes=True)
        yield Static(id="completion")
        yield from self.compose_chrome()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.selection_changed()

    def selection_changed(self) -> None:
        super().selection_changed()
        rq = question_rollouts_query(self.question_id, self.opd.signal)
        tq = question_text_query(self.question_id)
        self.queries = [rq, tq]
        self.load("rollouts", lambda cur: (rq.run(cur), tq.rows(cur)), self._show)

    def _show(self, result: tuple[pl.DataFrame, list[dict[str, object]]]) -> None:
        frame, text = result
        q = text[0] if text else {}
        self.query_one("#question", Static).update(Text.assemble(
            (f" {safe_text(self.question_id)}  ", "bold"),
            safe_text(str(q.get("question") or "∅"), 600).replace("\n", " ⏎ "),
            ("   answer ", "bold"), safe_text(str(q.get("final_answer") or "∅"), 80)))
        table = self.query_one(DataTable)
        table.clear(columns=True)
        shown = [c for c in frame.columns if c != "completion"]
        for name in shown:
            table.add_column(name, key=name)
        for row in frame.iter_rows(named=True):
            table.add_row(*(_cell(name, row[name]) for name in shown))
        self.frame = frame
        self.update_status(f"{frame.height} rollouts")
        self._show_completion(0)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_completion(event.cursor_row)

    def _show_completion(self, row: int) -> None:
        text = Text()
        if 0 <= row < self.frame.height:
            text.append("completion: ", "bold")
            text.append(safe_text(str(self.frame["completion"][row] or ""), 400)
                        .replace("\n", " ⏎ "))
        self.query_one("#completion", Static).update(text)

    def action_cursor(self, rows: int) -> None:
        self.query_one(DataTable).move_cursor(row=self.query_one(DataTable).cursor_row + rows)

    def action_open_rollout(self) -> None:
        table = self.query_one(DataTable)
        if not self.frame.height:
            return
        row = self.frame.row(table.cursor_row, named=True)
        start = int(row["first_decisive"] or 0)
        self.opd.open_rollout(self.question_id, int(row["rollout"]), start)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_rollout()


def _cell(name: str, value: object) -> Text | str:
    """Verdicts as words with an attribute (NO_COLOR keeps bold / dim), numbers right-aligned."""
    if value is None:
        return Text("∅", "dim")
    if name == "verdict":
        return Text(str(value), {"correct": "bold green", "incorrect": "bold red"}.get(
            str(value), "dim"))
    if isinstance(value, float):
        return Text(fmt(value, 2), justify="right")
    if isinstance(value, int):
        return Text(str(value), justify="right")
    return visible_token(str(value), max_cells=24)
