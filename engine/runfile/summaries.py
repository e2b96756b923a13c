"""Headline summaries (method.md "Headline analyses"), materialised once when a run is merged.

The TUI must open a 10M-token file instantly, so every headline number is computed here, not when
the file is opened. Heavy lifting is SQL aggregation down to one row per question and group; the
bootstrap over questions then only multiplies a (draws x questions) matrix of multinomial counts
with (questions x groups) sums and counts, so it costs the same for 10k or 10M tokens.

Choices documented in docs/schema.md: advantage (signal-independent) is repeated under every
signal; label shares are over labelled nodes; every headline comes twice, over all probed nodes
and over decisive ones; the oracle uses decisive nodes where every non-control teacher has both
half-scores; teachers whose cross-fitted choices differ are named "a|b".
"""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow as pa

from engine.rng import generator, sequence_key
from engine.runfile import schema

METRICS = ("edge", "cos", "beyond", "cos_c", "gain", "advantage")
LABELLED = ("edge", "cos", "beyond")
NODE_SETS = {"all": "true", "decisive": "n.decisive"}
CORRECTNESS = ("correct", "incorrect", "all")
PROXIES = (
    "student_entropy", "teacher_entropy", "kl_pq", "kl_qp", "js", "teachability", "sampled_rank",
)
ORACLE_UNITS = {"edge": "edge", "advantage": "advantage"}
QUANTILES = (0.05, 0.95)
_SUMMARY = {t.name: t for t in schema.SUMMARY_TABLES}


def materialise_summaries(
    con: duckdb.DuckDBPyConnection, *, draws: int = 200, seed: int = 0
) -> None:
    """Drop, recreate and fill every table of schema.SUMMARY_TABLES from the run tables."""
    if draws < 1:
        raise ValueError(f"bootstrap draws must be at least 1, got {draws}; pass draws=200")
    # DuckDB's parallel float sums depend on how rows fall to threads: one thread makes two
    # merges of the same parts bit-identical (the aggregates here are small)
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")
    try:
        _materialise(con, draws=draws, seed=seed)
    finally:
        con.execute(f"SET threads = {int(threads)}")


def _materialise(con: duckdb.DuckDBPyConnection, *, draws: int, seed: int) -> None:
    for t in schema.SUMMARY_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {t.name}")
    schema.create_tables(con, schema.SUMMARY_TABLES)
    qids, weights = question_weights(con, draws=draws, seed=seed)
    signal = rank_signal(con)
    _insert(con, "summary_alignment", _alignment_rows(con, qids, weights))
    con.execute(f"INSERT INTO summary_best {_BEST_SQL}", [signal])
    _insert(con, "summary_oracle", _oracle_rows(con, qids, weights))
    con.execute(f"INSERT INTO summary_position {_POSITION_SQL}", [signal])
    _insert(con, "summary_proxy", _proxy_rows(con, signal))
    con.execute(f"INSERT INTO summary_question_teacher {_QUESTION_TEACHER_SQL}")
    key = sequence_key(seed, "bootstrap", "summary")
    con.execute("DELETE FROM meta WHERE key = 'summary_bootstrap'")
    con.execute(
        "INSERT INTO meta VALUES ('summary_bootstrap', ?)",
        [json.dumps({"draws": draws, "seed": seed, "key": key, "unit": "question"})],
    )


def rank_signal(con: duckdb.DuckDBPyConnection) -> str:
    """The signal that ranks teachers in this run (meta rank_signal; rkl when unrecorded)."""
    row = con.execute("SELECT value FROM meta WHERE key = 'rank_signal'").fetchone()
    return row[0] if row else "rkl"


def question_weights(
    con: duckdb.DuckDBPyConnection, *, draws: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Questions with probed nodes, and (draws x questions) multinomial resampling counts.

    One matrix serves every group, so bootstrap draws are paired across teachers and signals.
    """
    qids = np.array(
        [r[0] for r in con.execute("SELECT DISTINCT question_id FROM nodes ORDER BY 1").fetchall()],
        dtype=object,
    )
    rng = generator(sequence_key(seed, "bootstrap", "summary"))
    n = len(qids)
    if n == 0:
        return qids, np.zeros((draws, 0))
    return qids, rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float64)


def ratio_interval(
    weights: np.ndarray, sums: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """5-95% quantiles of the node-weighted mean sum/count under question resampling.

    sums, counts: (questions, groups). Draws where a group has no nodes are left out; a group
    with no usable draw gets NaN.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (weights @ sums) / (weights @ counts)  # (draws, groups)
    lo = np.full(sums.shape[1], np.nan)
    hi = np.full(sums.shape[1], np.nan)
    ok = ~np.all(np.isnan(boot), axis=0)
    if ok.any():
        q = np.nanquantile(boot[:, ok], QUANTILES, axis=0)
        lo[ok], hi[ok] = q[0], q[1]
    return lo, hi


# ---------------------------------------------------------------------------------------------
# summary_alignment

_PER_QUESTION = """
    WITH qi AS (
        SELECT question_id, row_number() OVER (ORDER BY question_id) - 1 AS qi
        FROM (SELECT DISTINCT question_id FROM nodes)),
    sc AS (
        SELECT s.teacher, s.signal, s.question_id,
               CASE WHEN grouping(r.correct) = 1 THEN 'all'
                    WHEN r.correct THEN 'correct' ELSE 'incorrect' END AS correctness,
               count(*) AS nodes,
               count(s.edge) AS n_edge, sum(s.edge) AS sum_edge,
               count(s.cos) AS n_cos, sum(s.cos) AS sum_cos,
               count(s.beyond) AS n_beyond, sum(s.beyond) AS sum_beyond,
               count(s.cos_c) AS n_cos_c, sum(s.cos_c) AS sum_cos_c,
               count(s.gain) AS n_gain, sum(s.gain) AS sum_gain,
               count(*) FILTER (s.label_edge = 'helps') AS helps_edge,
               count(*) FILTER (s.label_edge = 'hurts') AS hurts_edge,
               count(*) FILTER (s.label_edge = 'neutral') AS neutral_edge,
               count(*) FILTER (s.label = 'helps') AS helps_cos,
               count(*) FILTER (s.label = 'hurts') AS hurts_cos,
               count(*) FILTER (s.label = 'neutral') AS neutral_cos,
               count(*) FILTER (s.label_beyond = 'helps') AS helps_beyond,
               count(*) FILTER (s.label_beyond = 'hurts') AS hurts_beyond,
               count(*) FILTER (s.label_beyond = 'neutral') AS neutral_beyond
        FROM scores s JOIN rollouts r USING (question_id, rollout)
        JOIN nodes n USING (question_id, rollout, pos) WHERE {where}
        GROUP BY GROUPING SETS ((s.teacher, s.signal, s.question_id, r.correct),
                                (s.teacher, s.signal, s.question_id))
        HAVING grouping(r.correct) = 1 OR r.correct IS NOT NULL),
    adv AS (
        SELECT nt.teacher, nt.question_id,
               CASE WHEN grouping(r.correct) = 1 THEN 'all'
                    WHEN r.correct THEN 'correct' ELSE 'incorrect' END AS correctness,
               count(*) AS nodes_advantage, count(nt.advantage) AS n_advantage,
               sum(nt.advantage) AS sum_advantage
        FROM node_teacher nt JOIN rollouts r USING (question_id, rollout)
        JOIN nodes n USING (question_id, rollout, pos) WHERE {where}
        GROUP BY GROUPING SETS ((nt.teacher, nt.question_id, r.correct),
                                (nt.teacher, nt.question_id))
        HAVING grouping(r.correct) = 1 OR r.correct IS NOT NULL),
    -- advantage does not depend on the signal: repeated under each one
    adv_signal AS (SELECT * FROM adv CROSS JOIN (SELECT DISTINCT signal FROM scores)),
    j AS (SELECT * FROM sc FULL OUTER JOIN adv_signal
          USING (teacher, signal, question_id, correctness))
    SELECT j.* EXCLUDE (question_id), qi.qi,
           dense_rank() OVER (ORDER BY teacher, signal,
               CASE correctness WHEN 'correct' THEN 0 WHEN 'incorrect' THEN 1 ELSE 2 END) - 1
               AS gid
    FROM j JOIN qi USING (question_id)"""


def _alignment_rows(
    con: duckdb.DuckDBPyConnection, qids: np.ndarray, weights: np.ndarray
) -> dict[str, list]:
    """One row per teacher x signal x correctness x node set x metric."""
    out: dict[str, list] = {c: [] for c in _SUMMARY["summary_alignment"].column_names}
    for node_set, where in NODE_SETS.items():
        for c, v in _alignment_set(con, qids, weights, node_set, where).items():
            out[c].extend(v)
    return out


def _alignment_set(
    con: duckdb.DuckDBPyConnection, qids: np.ndarray, weights: np.ndarray, node_set: str,
    where: str,
) -> dict[str, list]:
    """The rows of one node set; bootstrap over questions (a question without nodes in the set
    weighs nothing)."""
    is_control = dict(con.execute("SELECT teacher, is_control FROM teachers").fetchall())
    d = con.execute(_PER_QUESTION.format(where=where)).fetchnumpy()
    d = {k: np.ma.filled(v, 0) if np.ma.isMaskedArray(v) else v for k, v in d.items()}
    gid, qi = d["gid"].astype(np.int64), d["qi"].astype(np.int64)
    n_groups = int(gid.max()) + 1 if gid.size else 0
    n_m = len(METRICS)
    sums = np.zeros((len(qids), n_groups * n_m))
    counts = np.zeros_like(sums)
    nodes = np.zeros(n_groups * n_m)
    labels = np.zeros((n_groups * n_m, 3))
    for m, metric in enumerate(METRICS):
        col = gid * n_m + m
        sums[qi, col] = d[f"sum_{metric}"].astype(np.float64)
        counts[qi, col] = d[f"n_{metric}"].astype(np.float64)
        node_col = "nodes_advantage" if metric == "advantage" else "nodes"
        nodes += np.bincount(col, weights=d[node_col].astype(np.float64), minlength=nodes.size)
        if metric in LABELLED:
            for k, lab in enumerate(schema.LABELS):
                labels[:, k] += np.bincount(
                    col, weights=d[f"{lab}_{metric}"].astype(np.float64), minlength=nodes.size
                )
    lo, hi = ratio_interval(weights, sums, counts)
    _, first = np.unique(gid, return_index=True)
    out: dict[str, list] = {c: [] for c in _SUMMARY["summary_alignment"].column_names}
    for g, row in enumerate(first):
        teacher, signal, corr = d["teacher"][row], d["signal"][row], d["correctness"][row]
        for m, metric in enumerate(METRICS):
            j = g * n_m + m
            n = int(counts[:, j].sum())
            if nodes[j] == 0:
                continue  # e.g. a teacher with scores but no node_teacher rows
            labelled = labels[j].sum()
            shares = labels[j] / labelled if metric in LABELLED and labelled else None
            out["teacher"].append(teacher)
            out["is_control"].append(bool(is_control.get(teacher, False)))
            out["signal"].append(signal)
            out["correctness"].append(corr)
            out["nodes"].append(node_set)
            out["metric"].append(metric)
            out["n"].append(n)
            out["null_share"].append(1.0 - n / nodes[j])
            out["mean"].append(sums[:, j].sum() / n if n else None)
            out["n_labelled"].append(int(labelled) if metric in LABELLED else None)
            out["lo"].append(_finite(lo[j]))
            out["hi"].append(_finite(hi[j]))
            for k, lab in enumerate(schema.LABELS):
                out[lab].append(None if shares is None else float(shares[k]))
    return out


# ---------------------------------------------------------------------------------------------
# summary_best, summary_position, summary_proxy: pure SQL

_BEST_SQL = """
    WITH b AS (
        SELECT s.question_id, q.family, s.teacher, s.edge
        FROM scores s JOIN questions q USING (question_id) JOIN teachers t USING (teacher)
        JOIN nodes n USING (question_id, rollout, pos)
        WHERE s.signal = $1 AND s.edge IS NOT NULL AND n.decisive AND NOT t.is_control),
    per AS (
        SELECT 'question' AS scope, question_id AS key, teacher, avg(edge) AS m, count(*) AS n
        FROM b GROUP BY ALL
        UNION ALL
        SELECT 'family', family, teacher, avg(edge), count(*)
        FROM b WHERE family IS NOT NULL GROUP BY ALL
        UNION ALL
        SELECT 'run', 'all', teacher, avg(edge), count(*) FROM b GROUP BY ALL),
    ranked AS (
        SELECT *, row_number() OVER (PARTITION BY scope, key ORDER BY m DESC, teacher) AS rk
        FROM per)
    SELECT scope, key,
           max(teacher) FILTER (rk = 1), max(m) FILTER (rk = 1),
           max(teacher) FILTER (rk = 2), max(m) FILTER (rk = 1) - max(m) FILTER (rk = 2),
           max(n) FILTER (rk = 1)
    FROM ranked GROUP BY scope, key ORDER BY scope, key"""

_POSITION_SQL = """
    SELECT s.teacher, CASE WHEN r.correct THEN 'correct' ELSE 'incorrect' END,
           least(floor(10 * s.pos / r.n_tokens), 9)::SMALLINT AS decile,
           count(*), count(*) FILTER (n.decisive), avg(s.cos), avg(s.edge), count(s.label_edge),
           count(*) FILTER (s.label_edge = 'helps') / nullif(count(s.label_edge), 0),
           count(*) FILTER (s.label_edge = 'hurts') / nullif(count(s.label_edge), 0)
    FROM scores s JOIN rollouts r USING (question_id, rollout)
    JOIN nodes n USING (question_id, rollout, pos)
    WHERE s.signal = $1 AND r.correct IS NOT NULL
    GROUP BY ALL ORDER BY 1, 2, 3"""

_QUESTION_TEACHER_SQL = """
    SELECT s.question_id, s.teacher, s.signal, count(*), count(*) FILTER (n.decisive),
           avg(s.cos), avg(s.edge), avg(s.edge) FILTER (n.decisive),
           count(*) FILTER (s.label_edge = 'helps'), count(*) FILTER (s.label_edge = 'hurts'),
           count(*) FILTER (s.label_edge = 'neutral')
    FROM scores s JOIN nodes n USING (question_id, rollout, pos)
    GROUP BY ALL ORDER BY 1, 2, 3"""


_PROXY_SQL = """
    SELECT s.cos, s.edge, t.entropy AS student_entropy, nt.teacher_entropy, nt.kl_pq,
           nt.kl_qp, nt.js, nt.teachability, nt.sampled_rank::DOUBLE AS sampled_rank
    FROM scores s
    JOIN node_teacher nt USING (question_id, rollout, pos, teacher)
    JOIN tokens t USING (question_id, rollout, pos)
    WHERE s.signal = ? AND s.teacher = ?"""


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank (Spearman's convention)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation of average ranks; None when either side is constant or too short."""
    if x.size < 2:
        return None
    rx, ry = average_ranks(x) - (x.size + 1) / 2, average_ranks(y) - (y.size + 1) / 2
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else None


def _proxy_rows(con: duckdb.DuckDBPyConnection, signal: str) -> dict[str, list]:
    """Spearman per teacher, proxy and target, over nodes where both are present.

    Ranked in numpy, one teacher at a time: DuckDB's window ranks were ~30x slower here.
    """
    out: dict[str, list] = {c: [] for c in _SUMMARY["summary_proxy"].column_names}
    for (teacher,) in con.execute("SELECT teacher FROM teachers ORDER BY teacher").fetchall():
        cols = {k: np.ma.filled(np.ma.asarray(v, dtype=np.float64), np.nan)
                for k, v in con.execute(_PROXY_SQL, [signal, teacher]).fetchnumpy().items()}
        if cols["cos"].size == 0:
            continue
        for proxy in PROXIES:
            for target in ("cos", "edge"):
                x, y = cols[proxy], cols[target]
                both = ~(np.isnan(x) | np.isnan(y))
                for c, v in (("teacher", teacher), ("proxy", proxy), ("target", target),
                             ("spearman", spearman(x[both], y[both])), ("n", int(both.sum()))):
                    out[c].append(v)
    return out


# ---------------------------------------------------------------------------------------------
# summary_oracle


def _oracle_per_question(con: duckdb.DuckDBPyConnection, prefix: str) -> tuple[list, list]:
    """Per question: sum of the cross-fitted per-node best and node count; per teacher sums."""
    a, b = f"nt.{prefix}_a", f"nt.{prefix}_b"
    base = f"""
        WITH nc AS (SELECT teacher, row_number() OVER (ORDER BY teacher) AS r
                    FROM teachers WHERE NOT is_control),
        x AS (SELECT nt.question_id, nt.rollout, nt.pos, nt.teacher, nc.r, {a} AS xa, {b} AS xb
              FROM node_teacher nt JOIN nc USING (teacher)
              JOIN nodes n USING (question_id, rollout, pos)
              WHERE n.decisive AND {a} IS NOT NULL AND {b} IS NOT NULL),
        complete AS (SELECT question_id, rollout, pos FROM x GROUP BY ALL
                     HAVING count(*) = (SELECT count(*) FROM nc)),
        xc AS (SELECT x.* FROM x SEMI JOIN complete USING (question_id, rollout, pos))"""
    # ties go to the first teacher by name: the value compared is [score, -name rank]
    per_node = con.execute(f"""{base},
        per_node AS (
            SELECT question_id, arg_max(xb, [xa, -r::DOUBLE]) AS b_at_a,
                   arg_max(xa, [xb, -r::DOUBLE]) AS a_at_b
            FROM xc GROUP BY question_id, rollout, pos)
        SELECT question_id, sum((b_at_a + a_at_b) / 2), count(*) FROM per_node GROUP BY 1
        """).fetchall()
    per_teacher = con.execute(
        f"{base} SELECT question_id, teacher, sum(xa), sum(xb) FROM xc GROUP BY ALL"
    ).fetchall()
    return per_node, per_teacher


def _oracle_rows(
    con: duckdb.DuckDBPyConnection, qids: np.ndarray, weights: np.ndarray
) -> dict[str, list]:
    out: dict[str, list] = {c: [] for c in _SUMMARY["summary_oracle"].column_names}
    n_pairs, n_switch = con.execute(
        "SELECT count(*) FILTER (qualifies), count(*) FILTER (is_switch) "
        f"FROM ({schema.VIEWS['best_switches']})"
    ).fetchone()
    q_index = {q: i for i, q in enumerate(qids)}
    for unit, prefix in ORACLE_UNITS.items():
        per_node, per_teacher = _oracle_per_question(con, prefix)
        names = sorted({t for _, t, _, _ in per_teacher})
        t_index = {t: j for j, t in enumerate(names)}
        oracle_sum = np.zeros(len(qids))
        count = np.zeros(len(qids))
        sum_a = np.zeros((len(qids), len(names)))
        sum_b = np.zeros((len(qids), len(names)))
        for qid, s, n in per_node:
            oracle_sum[q_index[qid]], count[q_index[qid]] = s, n
        for qid, t, sa, sb in per_teacher:
            sum_a[q_index[qid], t_index[t]] = sa
            sum_b[q_index[qid], t_index[t]] = sb
        n = int(count.sum())
        row: dict[str, object] = {"unit": unit, "n": n, "n_pairs": n_pairs,
                                  "switch_rate": n_switch / n_pairs if n_pairs else None}
        if n and names:
            oracle = oracle_sum.sum() / n
            single, (i_a, i_b) = _best_single(sum_a.sum(0) / n, sum_b.sum(0) / n)
            w_n = weights @ count
            with np.errstate(invalid="ignore", divide="ignore"):
                boot_oracle = (weights @ oracle_sum) / w_n
                boot_single, _ = _best_single(
                    (weights @ sum_a) / w_n[:, None], (weights @ sum_b) / w_n[:, None]
                )
            lo, hi = _quantiles(boot_oracle - boot_single)
            label = names[i_a] if i_a == i_b else f"{names[i_a]}|{names[i_b]}"
            row.update(oracle_mean=oracle, best_single=label, best_single_mean=float(single),
                       oracle_gain=oracle - float(single), lo=lo, hi=hi)
        for c in out:
            out[c].append(row.get(c))
    return out


def _best_single(mean_a: np.ndarray, mean_b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Cross-fitted best single teacher: chosen on one half's means, scored on the other's.

    Works on (teachers,) or (draws, teachers); returns the averaged score and the two choices.
    """
    i_a = np.argmax(np.nan_to_num(mean_a, nan=-np.inf), axis=-1)
    i_b = np.argmax(np.nan_to_num(mean_b, nan=-np.inf), axis=-1)
    score_b = np.take_along_axis(mean_b, np.expand_dims(i_a, -1), -1)[..., 0]
    score_a = np.take_along_axis(mean_a, np.expand_dims(i_b, -1), -1)[..., 0]
    return (score_a + score_b) / 2, (int(np.ravel(i_a)[0]), int(np.ravel(i_b)[0]))


def _quantiles(boot: np.ndarray) -> tuple[float | None, float | None]:
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        return None, None
    lo, hi = np.quantile(boot, QUANTILES)
    return float(lo), float(hi)


def _finite(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, list]) -> None:
    """Insert column lists in the table's declared order (DuckDB casts by position)."""
    batch = pa.table({name: pa.array(values) for name, values in columns.items()})
    con.register("_summary_batch", batch)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM _summary_batch")
    finally:
        con.unregister("_summary_batch")
