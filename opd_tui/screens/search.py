"""Search across rollouts: which rollouts' text contains a string, how often, and where first.

The match runs in DuckDB over the whole run (one `string_agg` of the token texts per rollout,
in a worker): a rollout's text is its tokens' `token_text` in `pos` order (NULL counts as
empty), so a match may span tokens. Enter opens the rollout at the token where the first match
starts, with the search set, so `n` / `N` step through the other matches there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widgets import DataTable, Input, Static

from opd_tui import actions
from opd_tui.queries import Query
from opd_tui.render import safe_text
from opd_tui.screens.base import OpdScreen

MAX_HITS = 500
"""Rollouts listed at most; the summary says how many more matched."""
CONTEXT = 30
"""Characters of snippet either side of the first match."""

SEARCH_SQL = """
WITH needle AS (SELECT lower(?) AS n),
texts AS (
    SELECT question_id, rollout, string_agg(coalesce(token_text, ''), '' ORDER BY pos) AS text
    FROM tokens GROUP BY question_id, rollout
),
found AS (
    SELECT t.question_id, t.rollout, t.text, strpos(lower(t.text), n) AS first,
           (length(t.text) - length(replace(lower(t.text), n, ''))) // length(n) AS matches
    FROM texts t, needle WHERE contains(lower(t.text), n)
),
hits AS (
    SELECT *, count(*) OVER () AS hit_rollouts, sum(matches) OVER () AS hit_matches
    FROM found ORDER BY question_id, rollout LIMIT ?
),
starts AS (
    SELECT question_id, rollout, pos, length(coalesce(token_text, '')) AS len,
           coalesce(sum(length(coalesce(token_text, ''))) OVER (
               PARTITION BY question_id, rollout ORDER BY pos
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS start
    FROM tokens SEMI JOIN hits USING (question_id, rollout)
)
SELECT h.question_id, h.rollout,
       coalesce(r.verdict, CASE WHEN r.correct THEN 'correct'
                                WHEN NOT r.correct THEN 'incorrect' END) AS verdict,
       h.matches, s.pos AS first_pos, h.first - 1 AS first_offset,
       substring(h.text, greatest(h.first - ?, 1), h.first - greatest(h.first - ?, 1))
           AS before,
       substring(h.text, h.first, length(n)) AS match,
       substring(h.text, h.first + length(n), ?) AS after, length(h.text) AS text_len,
       h.hit_rollouts, h.hit_matches
FROM hits h CROSS JOIN needle
LEFT JOIN rollouts r USING (question_id, rollout)
LEFT JOIN starts s ON s.question_id = h.question_id AND s.rollout = h.rollout
     AND s.start <= h.first - 1 AND h.first - 1 < s.start + s.len
ORDER BY h.question_id, h.rollout"""
"""Offsets are in characters (DuckDB's `lower` maps one code point to one, so the offsets of
the lowered text are those of the text). `matches` counts non-overlapping occurrences."""


def search_query(needle: str, limit: int | None = None, context: int = CONTEXT) -> Query:
    return Query(SEARCH_SQL, (needle, limit or MAX_HITS, context, context, context))


@dataclass
class Hit:
    question_id: str
    rollout: int
    verdict: str | None
    matches: int
    first_pos: int
    before: str
    match: str
    after: str
    cut_before: bool = False
    cut_after: bool = False
    """Whether the snippet starts after the text's start / ends before its end."""


@dataclass
class SearchResult:
    needle: str
    hits: list[Hit]
    rollouts: int
    """Rollouts with a match, listed or not."""
    matches: int
    """Matches in all of them."""


def search(cur: Any, needle: str, limit: int | None = None,
           context: int = CONTEXT) -> SearchResult:
    """Run the search (call it off the UI thread)."""
    rows = search_query(needle, limit, context).rows(cur)
    hits: list[Hit] = []
    for r in rows:
        before, match, after = r["before"] or "", r["match"] or "", r["after"] or ""
        offset = int(r["first_offset"])
        hits.append(Hit(str(r["question_id"]), int(r["rollout"]), r["verdict"],
                        int(r["matches"]), int(r["first_pos"]) if r["first_pos"] is not None else 0,
                        before, match, after, offset > len(before),
                        offset + len(match) + len(after) < int(r["text_len"])))
    total = int(rows[0]["hit_rollouts"]) if rows else 0
    matches = int(rows[0]["hit_matches"]) if rows else 0
    return SearchResult(needle, hits, total, matches)


def _oneline(text: str) -> str:
    return safe_text(text).replace("\n", "⏎")


def snippet(hit: Hit) -> Text:
    """The text around the first match, controls made visible, the match highlighted."""
    return Text.assemble("…" if hit.cut_before else "", _oneline(hit.before),
                         (_oneline(hit.match), "bold reverse"), _oneline(hit.after),
                         "…" if hit.cut_after else "")


class SearchScreen(OpdScreen):
    scope = "search"
    BINDINGS = actions.bindings("search")
    HELP = ("Search the text of every rollout of the run (case-insensitive substring; a "
            "rollout's text is its tokens' text in order, so a match may span tokens). One row "
            "per rollout with a match: its verdict, the number of matches (non-overlapping), "
            "the position of the token where the first match starts and the text around it. "
            f"At most {MAX_HITS} rollouts are listed. Enter opens the rollout at that token with "
            "the search set: n / N step through its matches. / edits the search text.")
    DEFAULT_CSS = """
    SearchScreen #needle { height: 3; }
    SearchScreen #summary { height: auto; max-height: 2; }
    SearchScreen DataTable { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.result: SearchResult | None = None

    def compose(self):  # type: ignore[no-untyped-def]
        yield Input(placeholder="search the text of every rollout (case-insensitive), Enter",
                    id="needle")
        yield Static("type a text and press Enter", id="summary")
        yield DataTable(id="hits", cursor_type="row", zebra_stripes=True)
        yield from self.compose_chrome()

    def on_mount(self) -> None:
        self.query_one("#needle", Input).focus()
        self.update_status()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.run_search(event.value)

    def run_search(self, needle: str) -> None:
        summary = self.query_one("#summary", Static)
        if not needle:
            self.load("search", lambda cur: None, lambda _: None)  # drop a search in flight
            self.result = None
            self.query_one(DataTable).clear(columns=True)
            summary.update(Text("empty search text: type what to look for, then Enter",
                                "bold"))
            return
        query = search_query(needle)
        self.queries = [query]
        summary.update(Text(f"searching every rollout for {safe_text(needle, 200)!r}…"))
        self.load("search", lambda cur: search(cur, needle), self._show,
                  lambda e: summary.update(Text(f"search failed: {e}", "red")))

    def _show(self, result: SearchResult) -> None:
        self.result = result
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for name in ("question", "rollout", "verdict", "matches", "pos", "first match"):
            table.add_column(name, key=name)
        for h in result.hits:
            table.add_row(
                safe_text(h.question_id, 40), Text(str(h.rollout), justify="right"),
                Text(str(h.verdict or "∅"), {"correct": "bold green",
                                             "incorrect": "bold red"}.get(str(h.verdict), "dim")),
                Text(str(h.matches), justify="right"), Text(str(h.first_pos), justify="right"),
                snippet(h))
        needle = safe_text(result.needle, 200)
        if not result.hits:
            text = Text(f"no rollout contains {needle!r}", "bold")
        else:
            text = Text(f"{result.matches:,} matches of {needle!r} in {result.rollouts:,} "
                        "rollouts")
            hidden = result.rollouts - len(result.hits)
            if hidden:
                text.append(f"; the first {len(result.hits):,} listed, {hidden:,} not shown",
                            "bold")
            table.focus()
        self.query_one("#summary", Static).update(text)
        self.update_status(f"{result.rollouts} rollouts match")

    def selected(self) -> Hit | None:
        table = self.query_one(DataTable)
        if self.result is None or not 0 <= table.cursor_row < len(self.result.hits):
            return None
        return self.result.hits[table.cursor_row]

    def action_open_hit(self) -> None:
        hit = self.selected()
        if hit is not None and self.result is not None:
            self.opd.open_token(hit.question_id, hit.rollout, hit.first_pos,
                                search=self.result.needle)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_hit()

    def action_edit(self) -> None:
        self.query_one("#needle", Input).focus()

    def action_cursor(self, rows: int) -> None:
        table = self.query_one(DataTable)
        table.move_cursor(row=table.cursor_row + rows)
