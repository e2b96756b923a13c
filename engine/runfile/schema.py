"""The DuckDB file format: tables, views and readers shared by the engine, the TUI and users' SQL.

Torch-free on purpose: the TUI imports this module and must start fast. Every table is long and
tidy, keyed by (question_id, rollout, pos[, teacher, signal, cand]) and written in key order so
DuckDB's zone maps prune scans to one rollout. `docs/schema.md` documents each column; a test
checks that every column named here is documented there.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from engine.runfile.names import CONTROLS
from engine.runfile.names import SIGNALS as SIGNALS  # re-exported: schema.SIGNALS
from engine.runfile.sql import sql_literal

SCHEMA_VERSION = 5

LABELS = ("helps", "hurts", "neutral")

STAGES = ("sampling", "verification", "scoring", "continuations", "writing")
"""Stages of a question in pipeline order (question_stages.stage documents what each covers)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    doc: str


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def ddl(self) -> str:
        cols = ",\n  ".join(f"{c.name} {c.type}" for c in self.columns)
        return f"CREATE TABLE {self.name} (\n  {cols}\n)"


def _t(name: str, doc: str, key: tuple[str, ...], *cols: tuple[str, str, str]) -> Table:
    return Table(name, doc, key, tuple(Column(*c) for c in cols))


_NODE_KEY = (
    ("question_id", "VARCHAR", "stable question id from the dataset"),
    ("rollout", "SMALLINT", "rollout index within the question, 0..G-1"),
    ("pos", "INTEGER", "0-based index of the token in the response; node u_pos = (x, y_<pos)"),
)

# Per-run (not per-question) tables are written once, at the start of a run, into the run dir.
RUN_TABLES: tuple[Table, ...] = (
    _t(
        "meta", "Key/value facts about the run: versions, config, environment, timings.", ("key",),
        ("key", "VARCHAR", "schema_version, engine_version, config_toml, config_hash, created_at, "
         "environment (JSON), timings (JSON), summary_bootstrap, rank_signal (the signal that "
         "ranks teachers), sampling_temperature (T of g = (1/T) p (S - V)), ..."),
        ("value", "VARCHAR", "the value, as text (JSON for structured values)"),
    ),
    _t(
        "teachers", "One row per teacher configuration, controls included.", ("teacher",),
        ("teacher", "VARCHAR", "configuration name from the config (controls: "
         f"{', '.join(CONTROLS)})"),
        ("kind", "VARCHAR", "external | self | control"),
        ("is_control", "BOOLEAN", "controls are excluded from candidate sets and best-teacher"),
        ("model", "VARCHAR", "model path or hub id that produces q"),
        ("template", "VARCHAR", "prompt template over question fields ({question}, ...)"),
        ("temperature", "DOUBLE", "temperature at which the teacher's logits are read"),
        ("description", "VARCHAR", "what this configuration is, in words"),
        ("ordinal", "SMALLINT", "order of the configuration in the config (controls last)"),
    ),
    _t(
        "signals", "One row per distillation signal family scored.", ("signal",),
        ("signal", "VARCHAR", "rkl | fkl | jsd | sampled"),
        ("loss", "VARCHAR", "the per-token loss whose descent direction d is scored"),
        ("beta", "DOUBLE", "JSD interpolation beta (NULL for other signals)"),
        ("exact_split", "BOOLEAN", "true when d = t - h holds exactly (reverse KL only), so the "
         "beyond-sharpening score removes exactly the sharpening part"),
    ),
)

QUESTION_TABLES: tuple[Table, ...] = (
    _t(
        "questions", "One row per question attempted, including failed ones.", ("question_id",),
        ("question_id", "VARCHAR", "stable question id"),
        ("idx", "INTEGER", "position of the question in the dataset"),
        ("family", "VARCHAR", "task family / subject (NULL if the dataset has none)"),
        ("question", "VARCHAR", "question text"),
        ("solution", "VARCHAR", "reference worked solution (NULL if absent)"),
        ("final_answer", "VARCHAR", "reference final answer"),
        ("status", "VARCHAR", "ok | failed"),
        ("error", "VARCHAR", "error message when status = failed, else NULL"),
        ("n_rollouts", "SMALLINT", "rollouts sampled (G)"),
        ("n_correct", "SMALLINT", "rollouts the verifier accepted"),
        ("n_nodes", "INTEGER", "probed nodes over all rollouts"),
        ("n_continuations", "BIGINT", "targeted continuations sampled"),
        ("generated_tokens", "BIGINT", "tokens generated (rollouts + continuations)"),
        ("seconds", "DOUBLE", "wall time spent on the question (question_stages splits it)"),
    ),
    _t(
        "question_stages", "Wall time of each stage of a finished question (status ok), summed "
        "over its rollouts: where a run's time goes. Stages never overlap (one inside another "
        "pauses it), so a question's stages add up to about its questions.seconds.",
        ("question_id", "stage"),
        ("question_id", "VARCHAR", "stable question id"),
        ("stage", "VARCHAR", "sampling (generated contexts, prompts, the G rollouts) | "
         "verification (the verifier, on rollouts and on continuations) | scoring (hidden "
         "states, both scoring passes, node selection, node scores, the parameter check) | "
         "continuations (decoding the targeted continuations) | writing (building the "
         "question's rows; writing its part file follows, totalled in meta timings "
         "write_seconds)"),
        ("seconds", "DOUBLE", "wall time spent in the stage"),
    ),
    _t(
        "rollouts", "One row per student rollout.", ("question_id", "rollout"),
        *_NODE_KEY[:2],
        ("correct", "BOOLEAN", "verifier verdict; NULL when unverifiable"),
        ("verdict", "VARCHAR", "correct | incorrect | unverifiable"),
        ("verifier_detail", "VARCHAR", "which rule fired / extracted answer / error"),
        ("n_tokens", "INTEGER", "response length in tokens (EOS included when emitted)"),
        ("finished", "BOOLEAN", "true when the rollout ended with EOS (false: hit max_new_tokens)"),
        ("prompt", "VARCHAR", "the student's rendered prompt"),
        ("completion", "VARCHAR", "decoded response text"),
    ),
    _t(
        "tokens", "One row per response token of every rollout.", ("question_id", "rollout", "pos"),
        *_NODE_KEY,
        ("token_id", "INTEGER", "vocabulary id of the sampled token y_pos"),
        ("token_text", "VARCHAR", "decoded text of the token alone (may hold U+FFFD for partial "
         "UTF-8)"),
        ("token_bytes", "BLOB", "exact bytes of the token (byte-level tokens can be partial "
         "UTF-8)"),
        ("is_special", "BOOLEAN", "token is a special token (EOS, ...)"),
        ("logp", "DOUBLE", "student log p_samp(y_pos | u_pos), nats"),
        ("entropy", "DOUBLE", "student entropy H(p_train) at the node, nats"),
        ("probed", "BOOLEAN", "node was selected for targeted continuations"),
    ),
    _t(
        "teacher_prompts", "Each teacher's rendering of each question.", ("question_id", "teacher"),
        ("question_id", "VARCHAR", "stable question id"),
        ("teacher", "VARCHAR", "teacher configuration"),
        ("prompt", "VARCHAR", "the text the teacher sees before the student's response tokens"),
        ("n_prompt_tokens", "INTEGER", "its length in tokens"),
    ),
    _t(
        "rollout_prompts", "Prompts that depend on the rollout being scored (contrastive "
        "examples): each such teacher's rendering per rollout, instead of a teacher_prompts row.",
        ("question_id", "rollout", "teacher"),
        *_NODE_KEY[:2],
        ("teacher", "VARCHAR", "teacher configuration"),
        ("prompt", "VARCHAR", "the text the teacher sees at this rollout; NULL: no context "
         "(no other rollout of the kind, [derived] contrastive_missing = 'skip'), every value "
         "of the teacher at this rollout is NULL with reason no_context"),
        ("n_prompt_tokens", "INTEGER", "its length in tokens (NULL with the prompt)"),
    ),
    _t(
        "contexts", "Generated contexts ([[contexts]]): the text a model wrote for a question, "
        "placeholder {context} in teacher prompts.", ("question_id", "context"),
        ("question_id", "VARCHAR", "stable question id"),
        ("context", "VARCHAR", "the [[contexts]] name"),
        ("model", "VARCHAR", "the model that wrote it (\"student\" or a path)"),
        ("prompt", "VARCHAR", "the rendered prompt it was written from"),
        ("text", "VARCHAR", "the text (after answer_after, stripped)"),
        ("n_tokens", "INTEGER", "tokens generated"),
    ),
    _t(
        "nodes", "One row per probed node: the ideal direction g and its value.",
        ("question_id", "rollout", "pos"),
        *_NODE_KEY,
        ("v_hat", "DOUBLE", "V_hat = sum_C p_a S_hat_a / m_s (NULL when unverifiable)"),
        ("value_change", "DOUBLE", "S_hat of the sampled token minus V_hat"),
        ("m_s", "DOUBLE", "student mass covered by the candidate set"),
        ("n_candidates", "SMALLINT", "|C|"),
        ("n_cont", "INTEGER", "continuations per candidate (N)"),
        ("g_norm2", "DOUBLE", "|g|^2 (g is zero outside C; NULL when unverifiable)"),
        ("h_norm2", "DOUBLE", "|h|^2, h = p (log p + H(p)) over the full vocabulary"),
        ("gh", "DOUBLE", "<g, h>"),
        ("g_residual_share", "DOUBLE", "|P g|^2 / |g|^2: the share of g left after projecting "
         "out h (beyond is NULL below rho, meta score_rules)"),
        ("n_plausible", "SMALLINT", "|C+|: candidates with p >= pi or a non-control q >= pi, "
         "plus the sampled token (candidates.plausible)"),
        ("stakes", "DOUBLE", "max - min of S_hat over C+, in success probability (NULL when "
         "unverifiable)"),
        ("stakes_lo", "DOUBLE", "lower end of the calibrated stakes interval: max(0, max over "
         "pairs of C+ of lo_a - hi_b), per-candidate Jeffreys quantiles at level 0.72"),
        ("stakes_hi", "DOUBLE", "upper end: max over pairs a != b of C+ of hi_a - lo_b"),
        ("decisive", "BOOLEAN", "stakes >= tau_stakes (meta score_rules): only decisive nodes "
         "carry helps / hurts labels and a best teacher"),
        ("null_reason", "VARCHAR", "why scores at this node are NULL: no_signal (all candidates "
         "equal S), unverifiable (a candidate has no judged continuation, so no S), else NULL"),
        ("best_teacher", "VARCHAR", "confident leader among non-control teachers by edge under "
         "the rank signal (meta rank_signal): it beats the runner-up by the margin in at least "
         "leader_share of the paired draws, at a decisive node; NULL otherwise (best_reason)"),
        ("best_prob", "DOUBLE", "share of paired draws in which the point leader beats the "
         "runner-up by the margin"),
        ("best_margin", "DOUBLE", "point edge of the leader minus the runner-up's"),
        ("best_reason", "VARCHAR", "why best_teacher is NULL: not_decisive | tie | no_teacher | "
         "unverifiable; NULL when there is a best teacher or no signal"),
    ),
    _t(
        "candidates", "One row per candidate token of a probed node.",
        ("question_id", "rollout", "pos", "cand"),
        *_NODE_KEY,
        ("cand", "SMALLINT", "candidate index within the node"),
        ("token_id", "INTEGER", "vocabulary id of candidate a"),
        ("token_text", "VARCHAR", "decoded text of the candidate"),
        ("is_sampled", "BOOLEAN", "a = y_pos"),
        ("sources", "VARCHAR", "why it is in C: comma list of sampled, student, <teacher>"),
        ("plausible", "BOOLEAN", "in C+ (the set stakes spreads over): p >= pi, a non-control "
         "q >= pi, or the sampled token"),
        ("p", "DOUBLE", "student p_samp(a | u)"),
        ("s", "INTEGER", "successful continuations among the judged ones"),
        ("n", "INTEGER", "judged continuations (unverifiable ones excluded; 1 for a "
         "deterministic candidate)"),
        ("s_half", "INTEGER", "successes among the judged continuations of the first half "
         "(continuation index < N/2; cross-fitting); deterministic: s"),
        ("n_half", "INTEGER", "judged continuations of the first half; deterministic: n (both "
         "halves carry the certain outcome)"),
        ("n_unverifiable", "INTEGER", "continuations the verifier could not judge (timeout, "
         "crash): neither success nor failure"),
        ("deterministic", "BOOLEAN", "forced EOS or a token that fills the response budget: "
         "verified once, S exactly 0 or 1, no posterior spread"),
        ("s_hat", "DOUBLE", "s / n (NULL when nothing was judged)"),
        ("s_lo", "DOUBLE", "5% quantile of the Jeffreys posterior Beta(s+1/2, n-s+1/2) "
         "(deterministic: s_hat)"),
        ("s_hi", "DOUBLE", "95% quantile of the Jeffreys posterior (deterministic: s_hat)"),
        ("g", "DOUBLE", "ideal direction component g_a = (1/T) p_a (S_hat_a - V_hat), the "
         "gradient of the node's success probability in raw logits (T: sampling temperature)"),
        ("h", "DOUBLE", "sharpening direction component h_a"),
        ("text_success", "VARCHAR", "one continuation text that succeeded (NULL if none)"),
        ("text_failure", "VARCHAR", "one continuation text that failed (NULL if none)"),
    ),
    _t(
        "candidate_teacher", "Each teacher's probability and directions at each candidate.",
        ("question_id", "rollout", "pos", "cand", "teacher"),
        *_NODE_KEY,
        ("cand", "SMALLINT", "candidate index within the node"),
        ("teacher", "VARCHAR", "teacher configuration"),
        ("q", "DOUBLE", "teacher q_c(a | u)"),
        ("d_rkl", "DOUBLE", "reverse-KL direction component d_a (NULL if signal off)"),
        ("d_fkl", "DOUBLE", "forward-KL direction component"),
        ("d_jsd", "DOUBLE", "JSD(beta) direction component"),
        ("d_sampled", "DOUBLE", "sampled-token direction component"),
    ),
    _t(
        "node_teacher", "Per node and teacher: coverage, teacher advantage and cheap proxies.",
        ("question_id", "rollout", "pos", "teacher"),
        *_NODE_KEY,
        ("teacher", "VARCHAR", "teacher configuration"),
        ("m_c", "DOUBLE", "teacher mass covered by the candidate set"),
        ("advantage", "DOUBLE", "A_c = sum_C q_a (S_hat_a - V_hat) (NULL when unverifiable)"),
        ("advantage_lo", "DOUBLE", "5% bootstrap quantile of A_c"),
        ("advantage_hi", "DOUBLE", "95% bootstrap quantile of A_c"),
        ("advantage_a", "DOUBLE", "A_c from the first half of the continuations"),
        ("advantage_b", "DOUBLE", "A_c from the second half"),
        ("edge_a", "DOUBLE", "edge under the rank signal (meta rank_signal) from the first "
         "half of the continuations"),
        ("edge_b", "DOUBLE", "... from the second half (cross-fitted oracle gain)"),
        ("teacher_entropy", "DOUBLE", "H(q), nats"),
        ("kl_pq", "DOUBLE", "KL(p || q), nats"),
        ("kl_qp", "DOUBLE", "KL(q || p), nats"),
        ("js", "DOUBLE", "Jensen-Shannon divergence (beta 0.5), nats"),
        ("teachability", "DOUBLE", "teacher mass on the student's top-k_s tokens"),
        ("sampled_rank", "INTEGER", "rank of the sampled token under q (1 = teacher's favourite)"),
        ("logq_sampled", "DOUBLE", "log q(y_pos | u)"),
    ),
    _t(
        "scores", "Per node, teacher and signal: the alignment scores with intervals.",
        ("question_id", "rollout", "pos", "teacher", "signal"),
        *_NODE_KEY,
        ("teacher", "VARCHAR", "teacher configuration"),
        ("signal", "VARCHAR", "rkl | fkl | jsd | sampled"),
        ("d_norm2", "DOUBLE", "|d|^2 over the full vocabulary"),
        ("hd", "DOUBLE", "<h, d> over the full vocabulary"),
        ("gain", "DOUBLE", "<g, d>: first-order change in success per unit step along d (NULL "
         "only when unverifiable)"),
        ("cos", "DOUBLE", "cos(g, d) over the full vocabulary (NULL: see null_reason)"),
        ("cos_c", "DOUBLE", "cosine restricted to the candidate set"),
        ("cos_sharp", "DOUBLE", "cos(g, d_sharp): the sharpened-student reference under this "
         "signal (reverse KL: cos(g, h) exactly; NULL where d_sharp vanishes, counted as 0)"),
        ("edge", "DOUBLE", "edge over the sharpened student: cos - coalesce(cos_sharp, 0), in "
         "[-2, 2] (the headline knowledge score; the sharpened control's edge is 0)"),
        ("beyond", "DOUBLE", "cos(P g, P d), P projects out h (alignment beyond sharpening; "
         "NULL when sharpening_dominated)"),
        ("d_residual_share", "DOUBLE", "|P d|^2 / |d|^2 (beyond needs it >= rho)"),
        ("cos_lo", "DOUBLE", "lower end of the calibrated interval of cos (2.5% Jeffreys-draw "
         "quantile, meta interval_levels; NULL with cos, like every interval)"),
        ("cos_hi", "DOUBLE", "upper end (97.5% quantile)"),
        ("edge_lo", "DOUBLE", "lower end of the calibrated interval of edge (2.5% quantile)"),
        ("edge_hi", "DOUBLE", "upper end (97.5% quantile)"),
        ("beyond_lo", "DOUBLE", "lower end of the interval of beyond (2.5% quantile)"),
        ("beyond_hi", "DOUBLE", "upper end (97.5% quantile)"),
        ("gain_lo", "DOUBLE", "5% quantile of gain"),
        ("gain_hi", "DOUBLE", "95% quantile of gain"),
        ("label", "VARCHAR", "helps | hurts | neutral from the cos interval: helps needs a "
         "decisive node and cos_lo > epsilon (meta score_rules); NULL with cos"),
        ("label_edge", "VARCHAR", "helps | hurts | neutral from the edge interval, same rule "
         "(NULL with edge)"),
        ("label_beyond", "VARCHAR", "helps | hurts | neutral from the beyond interval, same "
         "rule (NULL with beyond)"),
        ("null_reason", "VARCHAR", "unverifiable | no_signal | zero_direction | "
         "no_sharpening_direction | pure_sharpening | ideal_is_sharpening | "
         "sharpening_dominated (the last four: beyond only) | no_context (the teacher had no "
         "context at this rollout: see rollout_prompts), else NULL"),
        ("param_cos", "DOUBLE", "parameter-space cos(J^T g, J^T d) where the opt-in check ran"),
    ),
)

TABLES: tuple[Table, ...] = RUN_TABLES + QUESTION_TABLES
TABLE_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}

# Headline summaries materialised at merge (engine.runfile.summaries fills them).
SUMMARY_TABLES: tuple[Table, ...] = (
    _t(
        "summary_alignment",
        "Per teacher, signal, rollout correctness and node set: mean scores with "
        "question-bootstrap 90% intervals.", ("teacher", "signal", "correctness", "nodes",
                                              "metric"),
        ("teacher", "VARCHAR", "teacher configuration"),
        ("is_control", "BOOLEAN", "configuration is a control"),
        ("signal", "VARCHAR", "signal family"),
        ("correctness", "VARCHAR", "correct | incorrect | all"),
        ("nodes", "VARCHAR", "all (every probed node) | decisive (nodes.decisive)"),
        ("metric", "VARCHAR", "edge | cos | beyond | cos_c | gain | advantage"),
        ("n", "BIGINT", "nodes averaged (non-NULL for cosines and edge, all probed for "
         "gain/advantage)"),
        ("null_share", "DOUBLE", "share of the node set where the metric is NULL"),
        ("mean", "DOUBLE", "mean over nodes"),
        ("lo", "DOUBLE", "5% quantile of the mean over a bootstrap of questions"),
        ("hi", "DOUBLE", "95% quantile"),
        ("n_labelled", "BIGINT", "labelled nodes: the denominator of helps / hurts / neutral "
         "(edge / cos / beyond metrics; a NULL score has no label)"),
        ("helps", "DOUBLE", "share of labelled nodes labelled helps (edge / cos / beyond)"),
        ("hurts", "DOUBLE", "share of labelled nodes labelled hurts"),
        ("neutral", "DOUBLE", "share of labelled nodes labelled neutral"),
    ),
    _t(
        "summary_best", "Best configuration per question, per family and over the run: the "
        "highest mean edge at decisive nodes under the rank signal (meta rank_signal; ties "
        "broken by name).", ("scope", "key"),
        ("scope", "VARCHAR", "question | family | run"),
        ("key", "VARCHAR", "question_id, family name, or 'all'"),
        ("best_teacher", "VARCHAR", "configuration with the highest mean edge"),
        ("best_mean", "DOUBLE", "its mean edge over decisive nodes (rank signal)"),
        ("runner_up", "VARCHAR", "second best"),
        ("margin", "DOUBLE", "best_mean - runner-up mean"),
        ("n", "BIGINT", "decisive nodes with a defined edge"),
    ),
    _t(
        "summary_oracle", "Cross-fitted oracle gain of choosing the teacher per decisive node.",
        ("unit",),
        ("unit", "VARCHAR", "edge (rank signal) | advantage"),
        ("oracle_mean", "DOUBLE", "mean over decisive nodes of the per-node best, cross-fitted"),
        ("best_single", "VARCHAR", "best single teacher (cross-fitted choice)"),
        ("best_single_mean", "DOUBLE", "its mean on the same nodes"),
        ("oracle_gain", "DOUBLE", "oracle_mean - best_single_mean"),
        ("lo", "DOUBLE", "5% question-bootstrap quantile of oracle_gain"),
        ("hi", "DOUBLE", "95% quantile"),
        ("n", "BIGINT", "decisive nodes where every non-control teacher has both halves"),
        ("switch_rate", "DOUBLE", "switches / n_pairs: share of qualifying pairs whose "
         "confident leader changes"),
        ("n_pairs", "BIGINT", "qualifying pairs: consecutive decisive nodes of a rollout that "
         "both have a confident best teacher (view best_switches)"),
    ),
    _t(
        "summary_position", "Edge and help/hurt shares by position decile of the rollout (rank "
        "signal, edge labels).", ("teacher", "correctness", "decile"),
        ("teacher", "VARCHAR", "teacher configuration"),
        ("correctness", "VARCHAR", "correct | incorrect"),
        ("decile", "SMALLINT", "0..9: floor(10 pos / n_tokens)"),
        ("n", "BIGINT", "nodes"),
        ("n_decisive", "BIGINT", "decisive nodes"),
        ("mean_cos", "DOUBLE", "mean plain cosine"),
        ("mean_edge", "DOUBLE", "mean edge"),
        ("n_labelled", "BIGINT", "labelled nodes: the denominator of helps / hurts"),
        ("helps", "DOUBLE", "share of labelled nodes whose edge label is helps"),
        ("hurts", "DOUBLE", "share of labelled nodes whose edge label is hurts"),
    ),
    _t(
        "summary_proxy", "Spearman correlation of cheap proxies with alignment (rank signal).",
        ("teacher", "proxy", "target"),
        ("teacher", "VARCHAR", "teacher configuration"),
        ("proxy", "VARCHAR", "student_entropy | teacher_entropy | kl_pq | kl_qp | js | "
         "teachability | sampled_rank"),
        ("target", "VARCHAR", "cos | edge"),
        ("spearman", "DOUBLE", "rank correlation over nodes with non-NULL target"),
        ("n", "BIGINT", "nodes"),
    ),
    _t(
        "summary_question_teacher", "Per question, teacher and signal: node counts, mean "
        "alignment and edge-label counts (the TUI's question list reads this, not `scores`).",
        ("question_id", "teacher", "signal"),
        ("question_id", "VARCHAR", "question"),
        ("teacher", "VARCHAR", "teacher configuration"),
        ("signal", "VARCHAR", "signal family"),
        ("n", "BIGINT", "probed nodes (scores rows) over all rollouts of the question"),
        ("n_decisive", "BIGINT", "decisive nodes among them"),
        ("mean_cos", "DOUBLE", "mean plain cosine over non-NULL nodes"),
        ("mean_edge", "DOUBLE", "mean edge over non-NULL nodes"),
        ("mean_edge_decisive", "DOUBLE", "mean edge over decisive nodes"),
        ("helps", "BIGINT", "nodes whose edge label is helps (decisive by construction)"),
        ("hurts", "BIGINT", "nodes whose edge label is hurts"),
        ("neutral", "BIGINT", "nodes whose edge label is neutral"),
    ),
)

VIEWS: dict[str, str] = {
    "token_scores": """
        SELECT t.question_id, t.rollout, t.pos, t.token_id, t.token_text, t.logp, t.entropy,
               r.correct, s.teacher, s.signal, s.edge, s.cos, s.cos_c, s.beyond, s.gain,
               s.label_edge, s.label, s.label_beyond, s.edge_lo, s.edge_hi, s.cos_lo, s.cos_hi,
               s.beyond_lo, s.beyond_hi, s.cos_sharp, s.null_reason, n.stakes, n.decisive,
               n.v_hat, n.value_change, te.is_control
        FROM scores s
        JOIN tokens t USING (question_id, rollout, pos)
        JOIN rollouts r USING (question_id, rollout)
        JOIN nodes n USING (question_id, rollout, pos)
        JOIN teachers te USING (teacher)""",
    "teacher_summary": """
        SELECT teacher, is_control, signal, correctness, nodes,
               max(mean) FILTER (WHERE metric = 'edge') AS edge,
               max(mean) FILTER (WHERE metric = 'cos') AS cos,
               max(mean) FILTER (WHERE metric = 'beyond') AS beyond,
               max(mean) FILTER (WHERE metric = 'gain') AS gain,
               max(mean) FILTER (WHERE metric = 'advantage') AS advantage,
               max(helps) FILTER (WHERE metric = 'edge') AS helps,
               max(hurts) FILTER (WHERE metric = 'edge') AS hurts,
               max(neutral) FILTER (WHERE metric = 'edge') AS neutral,
               max(n_labelled) FILTER (WHERE metric = 'edge') AS n_labelled,
               max(n) FILTER (WHERE metric = 'edge') AS n
        FROM summary_alignment GROUP BY ALL
        ORDER BY is_control, teacher, signal, correctness, nodes""",
    "question_summary": """
        SELECT q.question_id, q.idx, q.family, q.status, q.n_rollouts, q.n_correct,
               q.n_correct / nullif(q.n_rollouts, 0) AS accuracy, q.n_nodes,
               b.best_teacher, b.margin AS best_margin
        FROM questions q
        LEFT JOIN summary_best b ON b.scope = 'question' AND b.key = q.question_id""",
    "best_switches": """
        SELECT *, qualifies AND best_teacher <> prev_teacher AS is_switch
        FROM (SELECT question_id, rollout, pos, best_teacher, best_prob,
                     lag(pos) OVER w AS prev_pos, lag(best_teacher) OVER w AS prev_teacher,
                     coalesce(best_teacher IS NOT NULL AND lag(best_teacher) OVER w IS NOT NULL,
                              false) AS qualifies
              FROM nodes WHERE decisive
              WINDOW w AS (PARTITION BY question_id, rollout ORDER BY pos))""",
    "failed_questions": """
        SELECT question_id, idx, error, seconds FROM questions WHERE status = 'failed'""",
}

VIEW_DOCS: dict[str, str] = {
    "token_scores": "Every score joined with its token text, rollout correctness and node value.",
    "teacher_summary": "summary_alignment pivoted: one row per teacher, signal, correctness and "
    "node set (all | decisive); label shares are the edge labels'.",
    "question_summary": "One row per question with accuracy and its best teacher.",
    "best_switches": "Each decisive node with the previous decisive node of its rollout: "
    "qualifies when both have a confident best teacher, is_switch when that leader changes.",
    "failed_questions": "Questions whose computation failed, with the error.",
}


def create_tables(con: duckdb.DuckDBPyConnection, tables: tuple[Table, ...] = TABLES) -> None:
    for t in tables:
        con.execute(t.ddl())


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    for name, sql in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")


class SchemaError(Exception):
    """The file is not a run database this version can read."""


def check_schema(con: duckdb.DuckDBPyConnection, *, summaries: bool = True) -> None:
    """Raise SchemaError naming the first missing table or column, or a version it cannot read.

    The version is checked as text first: `int()` of a bad value would surface as a traceback in
    the TUI and in `opd-engine info` instead of one clear message.
    """
    have: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
    ).fetchall():
        have.setdefault(table, set()).add(column)
    wanted = TABLES + (SUMMARY_TABLES if summaries else ())
    for t in wanted:
        if t.name not in have:
            raise SchemaError(f"table '{t.name}' is missing")
        missing = [c for c in t.column_names if c not in have[t.name]]
        if missing:
            raise SchemaError(f"table '{t.name}' lacks column(s) {', '.join(missing)}")
    rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    row = rows[0] if rows else None  # fetchall: no unfinished result left on the caller's con
    if row is None:
        raise SchemaError("meta has no schema_version")
    try:  # meta values are text: a damaged or hand-edited file must not crash the readers
        version = int(str(row[0]).strip())
    except ValueError:
        raise SchemaError(
            f"meta schema_version is {row[0]!r}, not a version number; this tool reads version "
            f"{SCHEMA_VERSION}. The file is damaged or was not written by `opd-engine`"
        ) from None
    if version != SCHEMA_VERSION:
        newer = " (from a newer engine: upgrade this tool)" if version > SCHEMA_VERSION else ""
        raise SchemaError(
            f"schema version {version}{newer} but this tool reads version {SCHEMA_VERSION}; "
            "re-run `opd-engine merge` with a matching engine version"
        )


# ---------------------------------------------------------------------------------------------
# Run directories

RUN_DB_NAME = "run.duckdb"
PARTS_DIR = "parts"
RUN_TABLES_DIR = "run"


def is_live_run_dir(path: Path) -> bool:
    """A run directory not yet consolidated: readers see it through its Parquet parts, without
    summaries, and `r` can pick up new parts."""
    return path.is_dir() and not (path / RUN_DB_NAME).exists()


def part_glob(run_dir: Path, table: str) -> str:
    return str(run_dir / PARTS_DIR / "*" / f"{table}.parquet")


RUN_CATALOG = "run"
"""Name a consolidated file is attached under when it is opened into a caller's connection."""


def open_run(
    path: str | os.PathLike[str], *, into: duckdb.DuckDBPyConnection | None = None
) -> duckdb.DuckDBPyConnection:
    """Open a run read-only: a consolidated `.duckdb` file, or a run directory.

    A directory with a consolidated `run.duckdb` opens that file; a directory still being
    written (part files only) is exposed through views over its Parquet parts, so the TUI can
    watch a live run. The returned connection never writes the user's data.

    `into` builds the run into a connection the caller configured (the SQL sandbox): a file is
    then ATTACHed read-only as `RUN_CATALOG` and made the default catalog of that connection,
    so the caller's database instance, and its locked settings, are its own rather than shared
    through DuckDB's per-file instance cache with every other connection to the same file.
    """
    p = Path(path)
    if p.is_dir() and (p / RUN_DB_NAME).exists():
        p = p / RUN_DB_NAME
    if p.is_file():
        if into is None:
            return duckdb.connect(str(p), read_only=True)
        into.execute(f"ATTACH ? AS {RUN_CATALOG} (READ_ONLY)", [str(p)])
        into.execute(f"USE {RUN_CATALOG}")
        return into
    if not p.is_dir():
        raise FileNotFoundError(f"no run database or run directory at {p}")
    con = into if into is not None else duckdb.connect(":memory:")
    run_tables = p / RUN_TABLES_DIR
    for t in RUN_TABLES:
        f = run_tables / f"{t.name}.parquet"
        if f.exists():
            con.execute(f"CREATE VIEW {t.name} AS SELECT * FROM read_parquet({sql_literal(f)})")
        else:
            con.execute(t.ddl())  # in-memory catalog: visible to cursor()s
    for t in QUESTION_TABLES:
        files = sorted(glob.glob(part_glob(p, t.name)))
        if files:
            file_list = ", ".join(sql_literal(f) for f in files)  # views take no parameters
            con.execute(
                f"CREATE VIEW {t.name} AS SELECT * FROM read_parquet([{file_list}], "
                "union_by_name = true)"
            )
        else:
            con.execute(t.ddl())  # in-memory catalog: visible to cursor()s
    for t in SUMMARY_TABLES:  # not materialised until merge: empty
        con.execute(t.ddl())  # in-memory catalog: visible to cursor()s
    create_views(con)
    return con


def read_meta(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("SELECT key, value FROM meta").fetchall())
