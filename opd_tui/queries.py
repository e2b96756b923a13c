"""Query layer of the TUI: plain SQL over the run file, returning Polars frames. Textual-free.

Every view is backed by a `Query` (SQL text + parameters) so the screen can show, and copy, the
exact SQL behind it. Functions take a DuckDB cursor: the app gives each worker thread its own
`Run.cursor()`, since one DuckDB connection must not be used by two threads at once.

Polars (and pyarrow) are imported on first use, which happens in a worker thread: opening the
app and painting its first screen need neither, and together they cost ~0.3 s of start-up.
"""

from __future__ import annotations

import datetime
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from engine.report import unverifiable_warnings
from engine.schema import SIGNALS, SchemaError, check_schema, open_run, read_meta

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
    return "'" + str(value).replace("'", "''") + "'"


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


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------------------------
# Opening a run


class Run:
    """A run opened read-only: a `.duckdb` file, or a run directory still being written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.con = _open(self.path)
        self.live = self.path.is_dir() and not (self.path / "run.duckdb").exists()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def reopen(self) -> None:
        """Pick up new part files of a live run (and a merge that happened meanwhile)."""
        old = self.con
        self.con = _open(self.path)
        self.live = self.path.is_dir() and not (self.path / "run.duckdb").exists()
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
    live = path.is_dir() and not (path / "run.duckdb").exists()
    try:
        check_schema(con, summaries=not live)
    except SchemaError as e:
        con.close()
        raise OpenError(f"{path}: not a run database this version reads: {e}.") from None
    return con


# ---------------------------------------------------------------------------------------------
# Run facts (Overview)


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


def headline_query(signal: str) -> Query:
    """Per teacher x correctness for one signal: means with intervals, label shares."""
    return Query(
        """
        SELECT teacher, is_control, correctness,
               max(mean) FILTER (metric = 'cos') AS cos,
               max(lo) FILTER (metric = 'cos') AS cos_lo,
               max(hi) FILTER (metric = 'cos') AS cos_hi,
               max(mean) FILTER (metric = 'beyond') AS beyond,
               max(lo) FILTER (metric = 'beyond') AS beyond_lo,
               max(hi) FILTER (metric = 'beyond') AS beyond_hi,
               max(mean) FILTER (metric = 'gain') AS gain,
               max(lo) FILTER (metric = 'gain') AS gain_lo,
               max(hi) FILTER (metric = 'gain') AS gain_hi,
               max(mean) FILTER (metric = 'advantage') AS advantage,
               max(lo) FILTER (metric = 'advantage') AS advantage_lo,
               max(hi) FILTER (metric = 'advantage') AS advantage_hi,
               max(helps) FILTER (metric = 'cos') AS helps,
               max(hurts) FILTER (metric = 'cos') AS hurts,
               max(neutral) FILTER (metric = 'cos') AS neutral,
               max(n) FILTER (metric = 'cos') AS n,
               max(null_share) FILTER (metric = 'cos') AS null_share
        FROM summary_alignment JOIN teachers USING (teacher, is_control)
        WHERE signal = ? AND correctness IN ('incorrect', 'correct')
        GROUP BY teacher, is_control, correctness, ordinal
        ORDER BY is_control, ordinal, teacher, correctness DESC""",
        (signal,),
    )


HIST_BINS = 20


def histogram_query(signal: str, metric: str = "cos", bins: int = HIST_BINS) -> Query:
    """Counts of a cosine metric in `bins` equal bins over [-1, 1], per teacher."""
    col = {"cos": "cos", "beyond": "beyond"}[metric]
    return Query(
        f"""
        SELECT teacher, least(floor(({col} + 1) / 2 * {bins}), {bins - 1})::INT AS bin,
               count(*) AS n
        FROM scores WHERE signal = ? AND {col} IS NOT NULL
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


def align_column(teacher: str) -> str:
    return f"align_{teacher}"


def questions_query(
    teachers: list[str],
    signal: str,
    *,
    where: str = "",
    order_by: str = "idx",
    descending: bool = False,
    limit: int = 1000,
    offset: int = 0,
    summary: bool = True,
) -> Query:
    """One row per question: accuracy, mean plain alignment per teacher, hurt tokens, best.

    `where` is a user-typed DuckDB expression over the output columns; `order_by` one of them.
    With `summary` the per-teacher numbers come from `summary_question_teacher` (one row per
    question x teacher x signal, materialised at merge), so sorting or filtering 20,000
    questions does not aggregate millions of `scores` rows; a live run has no summaries yet
    and aggregates `scores` (same columns, same values).
    """
    if _FORBIDDEN_WHERE.search(where):
        raise QueryError("the filter is one expression: remove the ';'")
    controls = "(SELECT teacher FROM teachers WHERE is_control)"
    if summary:
        per_teacher = "".join(
            f",\n                       max(mean_cos) FILTER (teacher = {_literal(t)}) AS "
            f"{quote_ident(align_column(t))}"
            for t in teachers
        )
        aggregate = f"""
                SELECT question_id,
                       sum(hurts) FILTER (teacher NOT IN {controls})::BIGINT AS hurts{per_teacher}
                FROM summary_question_teacher WHERE signal = ? GROUP BY question_id"""
    else:
        per_teacher = "".join(
            f",\n                       avg(cos) FILTER (teacher = {_literal(t)}) AS "
            f"{quote_ident(align_column(t))}"
            for t in teachers
        )
        aggregate = f"""
                SELECT question_id,
                       count(*) FILTER (label = 'hurts' AND teacher NOT IN
                           {controls}) AS hurts{per_teacher}
                FROM scores WHERE signal = ? GROUP BY question_id"""
    picked = "".join(f", a.{quote_ident(align_column(t))}" for t in teachers)
    where_sql = f"WHERE {where}" if where.strip() else ""
    direction = "DESC" if descending else "ASC"
    return Query(
        f"""
        SELECT * FROM (
            SELECT q.question_id, q.idx, q.family, q.status,
                   q.n_correct / nullif(q.n_rollouts, 0) AS accuracy, q.n_rollouts, q.n_nodes,
                   coalesce(a.hurts, 0) AS hurts{picked}, b.best_teacher
            FROM questions q
            LEFT JOIN ({aggregate}
            ) a ON a.question_id = q.question_id
            LEFT JOIN summary_best b ON b.scope = 'question' AND b.key = q.question_id
        ) {where_sql}
        ORDER BY {quote_ident(order_by)} {direction} NULLS LAST, idx
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


def layers_query(question_id: str, rollout: int, teacher: str, signal: str) -> Query:
    """Per probed node: the selected teacher/signal scores and the node's own values."""
    return Query(
        """
        SELECT n.pos, s.cos, s.beyond, s.gain, s.label, s.label_beyond, s.null_reason,
               n.v_hat + n.value_change AS s_sampled, n.value_change, nt.kl_pq,
               nt.advantage, n.best_teacher
        FROM (SELECT * FROM nodes WHERE question_id = ? AND rollout = ?) n
        LEFT JOIN (SELECT * FROM scores WHERE question_id = ? AND rollout = ?
                   AND teacher = ? AND signal = ?) s USING (pos)
        LEFT JOIN (SELECT * FROM node_teacher WHERE question_id = ? AND rollout = ?
                   AND teacher = ?) nt USING (pos)
        ORDER BY n.pos""",
        (question_id, rollout, question_id, rollout, teacher, signal, question_id, rollout,
         teacher),
    )


@dataclass(frozen=True)
class Layer:
    """One way of colouring the rollout's tokens."""

    id: str
    title: str
    column: str
    kind: str  # diverging | sequential | categorical
    label_column: str | None = None


LAYERS: tuple[Layer, ...] = (
    Layer("align", "alignment cos(g,d)", "cos", "diverging", "label"),
    Layer("beyond", "alignment beyond sharpening", "beyond", "diverging", "label_beyond"),
    Layer("gain", "gain <g,d>", "gain", "diverging", "label"),
    Layer("advantage", "teacher advantage", "advantage", "diverging", "label"),
    Layer("s_sampled", "S of the sampled token", "s_sampled", "sequential", "label"),
    Layer("value_change", "value change S_y - V", "value_change", "diverging", "label"),
    Layer("entropy", "student entropy H(p)", "entropy", "sequential", "label"),
    Layer("kl", "KL(p||q) to the teacher", "kl_pq", "sequential", "label"),
    Layer("best", "best teacher per token", "best_teacher", "categorical", "label"),
)


# ---------------------------------------------------------------------------------------------
# Token inspector


def node_query(question_id: str, rollout: int, pos: int) -> Query:
    return Query(
        """
        SELECT t.pos, t.token_id, t.token_text, t.logp, t.entropy, t.probed, n.v_hat,
               n.value_change, n.m_s, n.n_candidates, n.n_cont, n.null_reason, n.best_teacher,
               n.best_prob
        FROM tokens t LEFT JOIN nodes n USING (question_id, rollout, pos)
        WHERE t.question_id = ? AND t.rollout = ? AND t.pos = ?""",
        (question_id, rollout, pos),
    )


def candidates_query(question_id: str, rollout: int, pos: int, teachers: list[str]) -> Query:
    """Candidate table: token, p, each teacher's q, S with interval and N, ideal g."""
    pivots = "".join(
        f",\n               max(ct.q) FILTER (ct.teacher = {_literal(t)}) "
        f"AS {quote_ident('q_' + t)}"
        for t in teachers
    )
    return Query(
        f"""
        SELECT c.cand, c.token_text, c.is_sampled, c.sources, c.p, c.s, c.n, c.s_hat, c.s_lo,
               c.s_hi, c.g, c.text_success, c.text_failure{pivots}
        FROM (SELECT * FROM candidates WHERE question_id = ? AND rollout = ? AND pos = ?) c
        LEFT JOIN (SELECT * FROM candidate_teacher WHERE question_id = ? AND rollout = ?
                   AND pos = ?) ct USING (cand)
        GROUP BY ALL ORDER BY c.p DESC, c.cand""",
        (question_id, rollout, pos, question_id, rollout, pos),
    )


def node_scores_query(question_id: str, rollout: int, pos: int) -> Query:
    """Every teacher x signal at the node, with advantage and proxies; controls last."""
    return Query(
        """
        SELECT s.teacher, te.is_control, s.signal, s.cos, s.cos_lo, s.cos_hi, s.label,
               s.beyond, s.beyond_lo, s.beyond_hi, s.label_beyond, s.gain, s.gain_lo,
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


def teacher_prompts_query(question_id: str) -> Query:
    return Query(
        """
        SELECT tp.teacher, tp.n_prompt_tokens, tp.prompt FROM teacher_prompts tp
        JOIN teachers te USING (teacher) WHERE tp.question_id = ?
        ORDER BY te.is_control, te.ordinal, tp.teacher""",
        (question_id,),
    )


def question_text_query(question_id: str) -> Query:
    return Query(
        "SELECT question, final_answer, family FROM questions WHERE question_id = ?",
        (question_id,),
    )
