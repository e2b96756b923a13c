"""Query layer of the TUI: plain SQL over the run file, returning Polars frames. Textual-free.

Every view is backed by a `Query` (SQL text + parameters) so the screen can show, and copy, the
exact SQL behind it. Functions take a DuckDB cursor: the app gives each worker thread its own
`Run.cursor()`, since one DuckDB connection must not be used by two threads at once.

Polars (and pyarrow) are imported on first use, which happens in a worker thread: opening the
app and painting its first screen need neither, and together they cost ~0.3 s of start-up.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from engine.runfile.report import unverifiable_warnings
from engine.runfile.schema import (
    SIGNALS,
    SchemaError,
    check_schema,
    is_live_run_dir,
    open_run,
    read_meta,
)
from engine.runfile.sql import sql_ident, sql_literal

if TYPE_CHECKING:
    import polars as pl


class OpenError(Exception):
    """The path given cannot be opened as a run; the message says why and what to do."""


class QueryError(Exception):
    """A user-typed expression failed; the message is DuckDB's, shown inline."""


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime.date):
        return f"'{value.isoformat()}'"
    return sql_literal(value)


@dataclass(frozen=True)
class Query:
    """SQL with positional `?` parameters; `inline()` gives a copy-pasteable statement."""

    sql: str
    params: tuple[Any, ...] = ()

    def run(self, cur: duckdb.DuckDBPyConnection) -> pl.DataFrame:
        import polars as pl

        table = cur.sql(self.sql, params=list(self.params)).to_arrow_table()
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def rows(self, cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
        """Small results as dicts: no Polars import, so the first screen can paint before it."""
        return _dict_rows(cur.execute(self.sql, list(self.params)))

    def inline(self) -> str:
        parts = self.sql.split("?")
        if len(parts) - 1 != len(self.params):
            return self.sql
        out = [parts[0]]
        for value, rest in zip(self.params, parts[1:], strict=True):
            out += [_literal(value), rest]
        return _dedent("".join(out))


def _dedent(sql: str) -> str:
    lines = [line for line in sql.strip("\n").split("\n")]
    indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    return "\n".join(x[indent:] for x in lines).strip() + ";"


# ---------------------------------------------------------------------------------------------
# Opening a run


class Run:
    """A run opened read-only: a `.duckdb` file, or a run directory still being written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.con = _open(self.path)
        self.live = is_live_run_dir(self.path)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def reopen(self) -> None:
        """Pick up new part files of a live run (and a merge that happened meanwhile)."""
        old = self.con
        self.con = _open(self.path)
        self.live = is_live_run_dir(self.path)
        old.close()

    def close(self) -> None:
        self.con.close()


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    if not path.exists():
        raise OpenError(f"{path}: no such file or directory. Pass a run .duckdb file or run dir.")
    try:
        con = open_run(path)
    except (duckdb.Error, FileNotFoundError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise OpenError(
            f"{path}: cannot be opened as a run database ({first}). Pass a .duckdb file written "
            "by `opd-engine` or a run directory."
        ) from None
    live = is_live_run_dir(path)
    try:
        check_schema(con, summaries=not live)
    except SchemaError as e:
        con.close()
        raise OpenError(f"{path}: not a run database this version reads: {e}.") from None
    return con


# ---------------------------------------------------------------------------------------------
# Run facts (Overview)


SCORE_RULES = {"tau_stakes": 0.1, "plausible": 0.01, "epsilon": 0.05, "margin": 0.1,
               "leader_share": 0.9, "rho": 0.05}
"""The engine's defaults (engine.inputs.config.ScoreConfig), used where meta has no score_rules.
Copied, not imported: the app loads only engine.runfile, to start fast and without torch."""

INTERVAL_LEVELS = {"cos": 0.95, "edge": 0.95, "beyond": 0.95, "gain": 0.88, "advantage": 0.88,
                   "s": 0.9}
"""Nominal levels of the per-node intervals when meta has no interval_levels."""


def _json_numbers(text: str | None, defaults: dict[str, float]) -> dict[str, float]:
    """A meta JSON object of numbers over `defaults`; a damaged value falls back, never raises
    (a hand-edited file must still open)."""
    out = dict(defaults)
    try:
        parsed = json.loads(text or "{}")
    except ValueError:
        return out
    if isinstance(parsed, dict):
        for k, v in parsed.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                out[str(k)] = float(v)
    return out


@dataclass
class RunInfo:
    meta: dict[str, str]
    teachers: list[dict[str, Any]]
    """One dict per teacher (controls last): teacher, kind, is_control, model, temperature,
    description. Plain rows, not a frame, so opening a run needs no Polars."""
    signals: list[str]
    counts: dict[str, int]
    accuracy: float | None
    config: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """Loud facts that make the numbers untrustworthy (most verdicts unverifiable)."""

    @property
    def rules(self) -> dict[str, float]:
        """meta score_rules: tau_stakes (decisive), epsilon (labels), margin, rho, ..."""
        return _json_numbers(self.meta.get("score_rules"), SCORE_RULES)

    @property
    def levels(self) -> dict[str, float]:
        """meta interval_levels: nominal level of each per-node interval (cos, edge, ...)."""
        return _json_numbers(self.meta.get("interval_levels"), INTERVAL_LEVELS)

    @property
    def sharpened_temperature(self) -> str:
        """T of the sharpened control: the edge's reference for signals other than rkl."""
        return self.meta.get("sharpened_temperature", "0.5")

    @property
    def teacher_names(self) -> list[str]:
        return [t["teacher"] for t in self.teachers]

    @property
    def non_control(self) -> list[str]:
        return [t["teacher"] for t in self.teachers if not t["is_control"]]

    @property
    def student(self) -> str:
        return str(self.config.get("student", {}).get("model", "?"))

    @property
    def node_strategy(self) -> str:
        nodes = self.config.get("nodes", {})
        budget = nodes.get("budget_tokens", 0)
        return f"{nodes.get('strategy', '?')}" + (f" (budget {budget} tok)" if budget else "")


TEACHERS_QUERY = Query(
    "SELECT teacher, kind, is_control, model, temperature, description\n"
    "FROM teachers ORDER BY is_control, ordinal, teacher"
)
COUNTS_QUERY = Query(
    """
    SELECT (SELECT count(*) FROM questions) AS questions,
           (SELECT count(*) FROM rollouts) AS rollouts,
           (SELECT count(*) FROM tokens) AS tokens,
           (SELECT count(*) FROM nodes) AS nodes,
           (SELECT avg(correct::INT) FROM rollouts) AS accuracy"""
)


def run_info(cur: duckdb.DuckDBPyConnection) -> RunInfo:
    meta = read_meta(cur)
    try:
        config = tomllib.loads(meta.get("config_toml", ""))
    except tomllib.TOMLDecodeError:
        config = {}
    teachers = _dict_rows(cur.execute(TEACHERS_QUERY.sql))
    present = [r[0] for r in cur.execute("SELECT signal FROM signals").fetchall()]
    signals = [s for s in SIGNALS if s in present] + [s for s in present if s not in SIGNALS]
    row = _dict_rows(cur.execute(COUNTS_QUERY.sql))[0]
    accuracy = row.pop("accuracy")
    counts = {k: int(v or 0) for k, v in row.items()}
    return RunInfo(meta, teachers, signals or list(SIGNALS), counts, accuracy, config,
                   unverifiable_warnings(cur))


def _dict_rows(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


HEADLINE_CELLS: tuple[tuple[str, str, str], ...] = (
    ("edge_dec", "decisive", "edge"),
    ("cos_dec", "decisive", "cos"),
    ("gain_dec", "decisive", "gain"),
    ("advantage_dec", "decisive", "advantage"),
    ("edge_all", "all", "edge"),
    ("cos_all", "all", "cos"),
    ("beyond_all", "all", "beyond"),
)
"""(column prefix, node set, metric) of the headline: each gives mean, _lo and _hi."""


def headline_query(signal: str) -> Query:
    """Per teacher x correctness for one signal: edge and plain cosine over decisive nodes and
    over every probed node, effect sizes at decisive nodes, edge-label shares of labelled
    decisive nodes with their denominator (summary_alignment, long -> wide)."""
    cells = []
    for prefix, node_set, metric in HEADLINE_CELLS:
        cond = f"nodes = '{node_set}' AND metric = '{metric}'"
        cells += [f"max(mean) FILTER ({cond}) AS {prefix}",
                  f"max(lo) FILTER ({cond}) AS {prefix}_lo",
                  f"max(hi) FILTER ({cond}) AS {prefix}_hi"]
    dec_edge = "nodes = 'decisive' AND metric = 'edge'"
    all_edge = "nodes = 'all' AND metric = 'edge'"
    all_beyond = "nodes = 'all' AND metric = 'beyond'"
    cells += [f"max(n) FILTER ({all_edge}) AS n_all",
              f"max(null_share) FILTER ({all_edge}) AS null_share_all",
              f"max(null_share) FILTER ({all_beyond}) AS null_share_beyond",
              f"max(n) FILTER ({dec_edge}) AS n_dec",
              f"max(n_labelled) FILTER ({dec_edge}) AS n_labelled",
              f"max(helps) FILTER ({dec_edge}) AS helps",
              f"max(hurts) FILTER ({dec_edge}) AS hurts",
              f"max(neutral) FILTER ({dec_edge}) AS neutral"]
    select = ",\n               ".join(cells)
    return Query(
        f"""
        SELECT teacher, is_control, correctness,
               {select}
        FROM summary_alignment JOIN teachers USING (teacher, is_control)
        WHERE signal = ? AND correctness IN ('incorrect', 'correct')
        GROUP BY teacher, is_control, correctness, ordinal
        ORDER BY is_control, ordinal, teacher, correctness DESC""",
        (signal,),
    )


HIST_BINS = 20
HIST_RANGE = {"edge": 2.0, "cos": 1.0, "beyond": 1.0}
"""Half-width of each histogrammed score's range: edge lies in [-2, 2], cosines in [-1, 1]."""


def histogram_query(signal: str, metric: str = "edge", bins: int = HIST_BINS,
                    decisive: bool = True) -> Query:
    """Counts of a score in `bins` equal bins over its range, per teacher (edge: [-2, 2]),
    over decisive nodes (where a token can help or hurt) or every probed node."""
    col = {"edge": "edge", "cos": "cos", "beyond": "beyond"}[metric]
    width = HIST_RANGE[metric]
    nodes = ("JOIN (SELECT question_id, rollout, pos FROM nodes WHERE decisive) n "
             "USING (question_id, rollout, pos)") if decisive else ""
    return Query(
        f"""
        SELECT teacher,
               greatest(least(floor(({col} + {width}) / {2 * width} * {bins}), {bins - 1}),
                        0)::INT AS bin,
               count(*) AS n
        FROM scores {nodes}
        WHERE signal = ? AND {col} IS NOT NULL
        GROUP BY ALL ORDER BY teacher, bin""",
        (signal,),
    )


def histograms(frame: pl.DataFrame | list[dict[str, Any]],
               bins: int = HIST_BINS) -> dict[str, list[int]]:
    """Per teacher, counts by bin from `histogram_query`'s frame or `Query.rows`."""
    out: dict[str, list[int]] = {}
    rows = frame.iter_rows() if hasattr(frame, "iter_rows") else (
        tuple(r.values()) for r in frame)
    for teacher, b, n in rows:
        out.setdefault(teacher, [0] * bins)[b] = int(n)
    return out


# ---------------------------------------------------------------------------------------------
# Questions


_FORBIDDEN_WHERE = re.compile(r";")


def edge_column(teacher: str) -> str:
    """Question-list column: the teacher's mean edge over the question's decisive nodes."""
    return f"edge_{teacher}"


def hurts_column(teacher: str) -> str:
    """Question-list column: the teacher's count of nodes whose edge label is hurts."""
    return f"hurts_{teacher}"


_QUESTION_TEACHER_LIVE = """
                SELECT s.question_id, s.teacher, count(*) FILTER (n.decisive) AS n_decisive,
                       avg(s.edge) FILTER (n.decisive) AS mean_edge_decisive,
                       count(*) FILTER (s.label_edge = 'hurts') AS hurts
                FROM scores s JOIN nodes n USING (question_id, rollout, pos)
                WHERE s.signal = ? GROUP BY ALL"""
"""summary_question_teacher's columns the list needs, aggregated from `scores` (live runs)."""


def questions_query(
    teachers: list[str],
    signal: str,
    *,
    controls: Collection[str] = (),
    where: str = "",
    order_by: str = "idx",
    descending: bool = False,
    limit: int = 1000,
    offset: int = 0,
    summary: bool = True,
) -> Query:
    """One row per question: accuracy, decisive nodes, per teacher the mean edge at decisive
    nodes and the hurt-labelled nodes (each teacher its own count: summing over teachers
    counted one node once per teacher), best teacher, then the question's facts and text (the
    numbers first: they are what a narrow terminal shows).

    Controls get an edge column (the baseline) but no hurts column. `where` is a user-typed
    DuckDB expression over the output columns; `order_by` one of them. With `summary` the
    per-teacher numbers come from `summary_question_teacher` (one row per question x teacher x
    signal, materialised at merge), so sorting or filtering 20,000 questions does not aggregate
    millions of `scores` rows; a live run has no summaries yet and aggregates `scores` joined
    with `nodes` (same columns, same values).
    """
    if _FORBIDDEN_WHERE.search(where):
        raise QueryError("the filter is one expression: remove the ';'")
    # (column, pivot over the per-teacher rows, outer select): a question without probed
    # nodes has no hurt token, 0, while its edge stays NULL
    per_teacher: list[tuple[str, str, str]] = []
    for t in teachers:
        name = sql_ident(edge_column(t))
        per_teacher.append((name, f"max(mean_edge_decisive) FILTER (teacher = {_literal(t)})",
                            f"a.{name}"))
        if t not in controls:
            name = sql_ident(hurts_column(t))
            per_teacher.append((name, f"max(hurts) FILTER (teacher = {_literal(t)})",
                                f"coalesce(a.{name}, 0) AS {name}"))
    pivots = "".join(f",\n                       {expr} AS {name}"
                     for name, expr, _ in per_teacher)
    source = (
        """
                SELECT question_id, teacher, n_decisive, mean_edge_decisive, hurts
                FROM summary_question_teacher WHERE signal = ?""" if summary
        else _QUESTION_TEACHER_LIVE)
    aggregate = f"""
                SELECT question_id, max(n_decisive) AS n_decisive{pivots}
                FROM ({source}
                ) GROUP BY question_id"""
    picked = "".join(f", {outer}" for _, _, outer in per_teacher)
    where_sql = f"WHERE {where}" if where.strip() else ""
    direction = "DESC" if descending else "ASC"
    return Query(
        f"""
        SELECT * FROM (
            SELECT q.question_id, q.idx, q.n_correct / nullif(q.n_rollouts, 0) AS accuracy,
                   a.n_decisive{picked}, b.best_teacher, q.family, q.status, q.n_rollouts,
                   q.n_nodes, q.question
            FROM questions q
            LEFT JOIN ({aggregate}
            ) a ON a.question_id = q.question_id
            LEFT JOIN summary_best b ON b.scope = 'question' AND b.key = q.question_id
        ) {where_sql}
        ORDER BY {sql_ident(order_by)} {direction} NULLS LAST, idx
        LIMIT {int(limit)} OFFSET {int(offset)}""",
        (signal,),
    )


def fetch_questions(cur: duckdb.DuckDBPyConnection, query: Query) -> pl.DataFrame:
    try:
        return query.run(cur)
    except duckdb.Error as e:
        raise QueryError(str(e).splitlines()[0]) from None


def rollouts_query(question_id: str) -> Query:
    return Query(
        """
        SELECT rollout, correct, verdict, n_tokens, finished, verifier_detail
        FROM rollouts WHERE question_id = ? ORDER BY rollout""",
        (question_id,),
    )


def question_rollouts_query(question_id: str, signal: str) -> Query:
    """The question's rollouts for triage: verdict, length, decisive nodes and the first one,
    and the non-control teacher with the lowest mean edge at its decisive nodes (the one that
    pulls hardest the wrong way there) with that edge and its hurt count."""
    return Query(
        """
        WITH n AS (
            SELECT rollout, count(*) FILTER (decisive) AS n_decisive,
                   min(pos) FILTER (decisive) AS first_decisive
            FROM nodes WHERE question_id = ? GROUP BY rollout
        ), per AS (
            SELECT s.rollout, s.teacher, avg(s.edge) FILTER (nd.decisive) AS edge_decisive,
                   count(*) FILTER (s.label_edge = 'hurts') AS hurts
            FROM scores s JOIN nodes nd USING (question_id, rollout, pos)
            JOIN teachers te USING (teacher)
            WHERE s.question_id = ? AND s.signal = ? AND NOT te.is_control
            GROUP BY ALL
        ), worst AS (
            SELECT rollout, arg_min(teacher, edge_decisive) AS worst_teacher,
                   min(edge_decisive) AS worst_edge, arg_min(hurts, edge_decisive) AS worst_hurts
            FROM per WHERE edge_decisive IS NOT NULL GROUP BY rollout
        )
        SELECT r.rollout, r.verdict, r.n_tokens, coalesce(n.n_decisive, 0) AS n_decisive,
               n.first_decisive, t.token_text AS first_decisive_token, w.worst_teacher,
               w.worst_edge, w.worst_hurts, r.completion
        FROM rollouts r
        LEFT JOIN n USING (rollout)
        LEFT JOIN worst w USING (rollout)
        LEFT JOIN tokens t ON t.question_id = r.question_id AND t.rollout = r.rollout
                          AND t.pos = n.first_decisive
        WHERE r.question_id = ?
        ORDER BY r.rollout""",
        (question_id, question_id, signal, question_id),
    )


def rollout_keys_query() -> Query:
    return Query("SELECT question_id, rollout FROM rollouts ORDER BY question_id, rollout")


# ---------------------------------------------------------------------------------------------
# Rollout: tokens and per-token layers


def tokens_query(question_id: str, rollout: int) -> Query:
    return Query(
        """
        SELECT pos, token_id, token_text, token_bytes, is_special, logp, entropy, probed
        FROM tokens WHERE question_id = ? AND rollout = ? ORDER BY pos""",
        (question_id, rollout),
    )


LABEL_RANK = "CASE {0} WHEN 'helps' THEN 1 WHEN 'hurts' THEN -1 ELSE 0 END"


def layers_query(question_id: str, rollout: int, teacher: str, signal: str,
                 other: str | None = None) -> Query:
    """Per probed node: the selected teacher/signal scores, the node's own values, and the
    difference to a second teacher `other` (edge_diff; label_diff says whose label is better
    at a decisive node: 'helps' = the selected teacher's, 'hurts' = the other's)."""
    return Query(
        f"""
        SELECT n.pos, s.edge, s.cos, s.beyond, s.gain, s.label_edge, s.label, s.label_beyond,
               s.null_reason, n.v_hat, n.v_hat + n.value_change AS s_sampled, n.value_change,
               n.stakes, n.decisive, nt.kl_pq, nt.advantage, n.best_teacher,
               s.edge - o.edge AS edge_diff,
               CASE sign({LABEL_RANK.format("s.label_edge")} - {LABEL_RANK.format("o.label_edge")})
                   WHEN 1 THEN 'helps' WHEN -1 THEN 'hurts' END AS label_diff
        FROM (SELECT * FROM nodes WHERE question_id = ? AND rollout = ?) n
        LEFT JOIN (SELECT * FROM scores WHERE question_id = ? AND rollout = ?
                   AND teacher = ? AND signal = ?) s USING (pos)
        LEFT JOIN (SELECT * FROM scores WHERE question_id = ? AND rollout = ?
                   AND teacher = ? AND signal = ?) o USING (pos)
        LEFT JOIN (SELECT * FROM node_teacher WHERE question_id = ? AND rollout = ?
                   AND teacher = ?) nt USING (pos)
        ORDER BY n.pos""",
        (question_id, rollout, question_id, rollout, teacher, signal, question_id, rollout,
         other or "", signal, question_id, rollout, teacher),
    )


@dataclass(frozen=True)
class Layer:
    """One way of colouring the rollout's tokens.

    `scale` fixes the colour scale (the score's natural range: 2 for edge, 1 for cosines and
    probabilities) so colours compare across rollouts; None scales to the rollout's values.
    `label_column` gives the helps/hurts markers: the layer's own label for a score that has one,
    else the headline edge label.
    """

    id: str
    title: str
    column: str
    kind: str  # diverging | sequential | categorical
    label_column: str = "label_edge"
    scale: float | None = None


LAYERS: tuple[Layer, ...] = (
    Layer("edge", "edge = cos - cos_sharp", "edge", "diverging", "label_edge", 2.0),
    Layer("align", "alignment cos(g,d)", "cos", "diverging", "label", 1.0),
    Layer("beyond", "beyond sharpening (secondary)", "beyond", "diverging", "label_beyond", 1.0),
    Layer("stakes", "stakes (S spread over C+)", "stakes", "sequential", scale=1.0),
    Layer("gain", "gain <g,d>", "gain", "diverging"),
    Layer("advantage", "teacher advantage", "advantage", "diverging"),
    Layer("s_sampled", "S of the sampled token", "s_sampled", "sequential", scale=1.0),
    Layer("value_change", "value change S_y - V", "value_change", "diverging"),
    Layer("entropy", "student entropy H(p)", "entropy", "sequential"),
    Layer("kl", "KL(p||q) to the teacher", "kl_pq", "sequential"),
    Layer("best", "best teacher per token", "best_teacher", "categorical"),
    Layer("diff", "edge difference to a second teacher", "edge_diff", "diverging", "label_diff",
          4.0),
)
"""The first layer is the default: edge, the headline score."""


# ---------------------------------------------------------------------------------------------
# Token inspector


def node_query(question_id: str, rollout: int, pos: int) -> Query:
    return Query(
        """
        SELECT t.pos, t.token_id, t.token_text, t.logp, t.entropy, t.probed, n.v_hat,
               n.value_change, n.m_s, n.n_candidates, n.n_cont, n.n_plausible, n.stakes,
               n.stakes_lo, n.stakes_hi, n.decisive, n.g_residual_share, n.null_reason,
               n.best_teacher, n.best_prob, n.best_margin, n.best_reason
        FROM tokens t LEFT JOIN nodes n USING (question_id, rollout, pos)
        WHERE t.question_id = ? AND t.rollout = ? AND t.pos = ?""",
        (question_id, rollout, pos),
    )


def candidates_query(question_id: str, rollout: int, pos: int, teachers: list[str]) -> Query:
    """Candidate table: token, C+ membership, p, each teacher's q, S with interval and s/N,
    ideal g."""
    pivots = "".join(
        f",\n               max(ct.q) FILTER (ct.teacher = {_literal(t)}) "
        f"AS {sql_ident('q_' + t)}"
        for t in teachers
    )
    return Query(
        f"""
        SELECT c.cand, c.token_text, c.is_sampled, c.plausible, c.sources, c.p, c.s, c.n,
               c.n_unverifiable, c.deterministic, c.s_hat, c.s_lo, c.s_hi, c.g, c.text_success,
               c.text_failure{pivots}
        FROM (SELECT * FROM candidates WHERE question_id = ? AND rollout = ? AND pos = ?) c
        LEFT JOIN (SELECT * FROM candidate_teacher WHERE question_id = ? AND rollout = ?
                   AND pos = ?) ct USING (cand)
        GROUP BY ALL ORDER BY c.p DESC, c.cand""",
        (question_id, rollout, pos, question_id, rollout, pos),
    )


def node_scores_query(question_id: str, rollout: int, pos: int) -> Query:
    """Every teacher x signal at the node: edge, cosines, beyond with its residual share, gain,
    advantage and proxies; controls last."""
    return Query(
        """
        SELECT s.teacher, te.is_control, s.signal, s.edge, s.edge_lo, s.edge_hi, s.label_edge,
               s.cos, s.cos_lo, s.cos_hi, s.label, s.cos_sharp, s.beyond, s.beyond_lo,
               s.beyond_hi, s.label_beyond, s.d_residual_share, s.gain, s.gain_lo,
               s.gain_hi, s.null_reason, nt.advantage, nt.advantage_lo, nt.advantage_hi,
               nt.kl_pq, nt.teacher_entropy, nt.teachability, nt.sampled_rank
        FROM (SELECT * FROM scores WHERE question_id = ? AND rollout = ? AND pos = ?) s
        JOIN teachers te USING (teacher)
        LEFT JOIN (SELECT * FROM node_teacher WHERE question_id = ? AND rollout = ?
                   AND pos = ?) nt USING (teacher)
        ORDER BY te.is_control, te.ordinal, s.teacher, s.signal""",
        (question_id, rollout, pos, question_id, rollout, pos),
    )


@dataclass
class NodeDetail:
    question_id: str
    rollout: int
    pos: int
    node: dict[str, Any]
    candidates: pl.DataFrame
    scores: pl.DataFrame


def node_detail(
    cur: duckdb.DuckDBPyConnection, question_id: str, rollout: int, pos: int, teachers: list[str]
) -> NodeDetail:
    rows = node_query(question_id, rollout, pos).run(cur)
    node = rows.row(0, named=True) if rows.height else {}
    if node.get("v_hat") is None and not node.get("probed"):
        import polars as pl

        empty = pl.DataFrame()
        return NodeDetail(question_id, rollout, pos, node, empty, empty)
    cands = candidates_query(question_id, rollout, pos, teachers).run(cur)
    scores = node_scores_query(question_id, rollout, pos).run(cur)
    return NodeDetail(question_id, rollout, pos, node, cands, scores)


def teacher_prompts_query(question_id: str, rollout: int) -> Query:
    """What each teacher saw before this rollout's tokens: its question-level prompt, or its
    rendering for this rollout (contrastive contexts; NULL prompt: skipped, no context)."""
    return Query(
        """
        SELECT p.teacher, p.n_prompt_tokens, p.prompt, p.per_rollout
        FROM (SELECT teacher, n_prompt_tokens, prompt, false AS per_rollout
              FROM teacher_prompts WHERE question_id = ?
              UNION ALL
              SELECT teacher, n_prompt_tokens, prompt, true
              FROM rollout_prompts WHERE question_id = ? AND rollout = ?) p
        JOIN teachers te USING (teacher)
        ORDER BY te.is_control, te.ordinal, p.teacher""",
        (question_id, question_id, rollout),
    )


def contexts_query(question_id: str) -> Query:
    """The question's generated contexts ([[contexts]]): which model wrote what."""
    return Query(
        """
        SELECT context, model, n_tokens, text FROM contexts WHERE question_id = ?
        ORDER BY context""",
        (question_id,),
    )


def question_text_query(question_id: str) -> Query:
    return Query(
        "SELECT question, final_answer, family FROM questions WHERE question_id = ?",
        (question_id,),
    )
