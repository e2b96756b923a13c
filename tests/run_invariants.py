"""One set of invariants every run database must satisfy, whoever wrote it (the engine or the
synthetic fixture): NULL scores carry no interval and no label, labels follow intervals,
summary shares are over labelled nodes, certain outcomes have no spread; labels and best
teachers exist only at decisive nodes; edge is cos minus the sharpened reference."""

from __future__ import annotations

import json

import duckdb

CHECKS: dict[str, str] = {
    "interval or label where cos is NULL": """
        SELECT count(*) FROM scores WHERE cos IS NULL
          AND (cos_lo IS NOT NULL OR cos_hi IS NOT NULL OR label IS NOT NULL)""",
    "interval or label where beyond is NULL": """
        SELECT count(*) FROM scores WHERE beyond IS NULL
          AND (beyond_lo IS NOT NULL OR beyond_hi IS NOT NULL OR label_beyond IS NOT NULL)""",
    "interval or label where edge is NULL": """
        SELECT count(*) FROM scores WHERE edge IS NULL
          AND (edge_lo IS NOT NULL OR edge_hi IS NOT NULL OR label_edge IS NOT NULL)""",
    "edge is not cos minus the sharpened reference": """
        SELECT count(*) FROM scores WHERE (edge IS NULL) <> (cos IS NULL)
          OR abs(edge - (cos - coalesce(cos_sharp, 0))) > 1e-12""",
    "helps or hurts at a node that is not decisive": """
        SELECT count(*) FROM scores s JOIN nodes n USING (question_id, rollout, pos)
        WHERE NOT coalesce(n.decisive, false)
          AND 'helps' IN (s.label, s.label_edge, s.label_beyond)
           OR NOT coalesce(n.decisive, false)
          AND 'hurts' IN (s.label, s.label_edge, s.label_beyond)""",
    "best teacher at a node that is not decisive": """
        SELECT count(*) FROM nodes WHERE best_teacher IS NOT NULL AND NOT decisive
          OR (best_teacher IS NULL) = (best_reason IS NULL) AND null_reason IS NULL""",
    "decisive disagrees with stakes": """
        SELECT count(*) FROM nodes WHERE decisive <> coalesce(stakes >= $tau, false)
          OR stakes_lo > stakes_hi OR stakes_lo < 0 OR stakes_hi > 1""",
    "no label or interval where cos is defined": """
        SELECT count(*) FROM scores WHERE cos IS NOT NULL
          AND (label IS NULL OR cos_lo IS NULL OR cos_hi IS NULL)""",
    "gain interval without gain": """
        SELECT count(*) FROM scores WHERE gain IS NULL AND (gain_lo IS NOT NULL
                                                        OR gain_hi IS NOT NULL)""",
    "label disagrees with its interval": """
        SELECT count(*) FROM scores s JOIN nodes n USING (question_id, rollout, pos) WHERE
          (label = 'helps') <> coalesce(n.decisive AND cos_lo > $eps, false)
          OR (label = 'hurts') <> coalesce(n.decisive AND cos_hi < -$eps, false)
          OR (label_edge = 'helps') <> coalesce(n.decisive AND edge_lo > $eps, false)
          OR (label_edge = 'hurts') <> coalesce(n.decisive AND edge_hi < -$eps, false)
          OR (label_beyond = 'helps') <> coalesce(n.decisive AND beyond_lo > $eps, false)
          OR (label_beyond = 'hurts') <> coalesce(n.decisive AND beyond_hi < -$eps, false)""",
    "score at a no-signal node": """
        SELECT count(*) FROM scores s JOIN nodes n USING (question_id, rollout, pos)
        WHERE n.null_reason IS NOT NULL AND s.cos IS NOT NULL""",
    "counts out of range": """
        SELECT count(*) FROM candidates WHERE s > n OR s_half > n_half OR n_half > n
          OR n_unverifiable < 0""",
    "deterministic candidate with spread": """
        SELECT count(*) FROM candidates WHERE deterministic
          AND (n > 1 OR (n = 1 AND (s_lo <> s_hat OR s_hi <> s_hat)))""",
    "summary label shares not over labelled nodes": """
        WITH c AS (SELECT teacher, signal, count(label_edge) AS k,
                          count(*) FILTER (label_edge = 'helps') AS helps FROM scores
                   GROUP BY ALL)
        SELECT count(*) FROM summary_alignment a JOIN c USING (teacher, signal)
        WHERE a.correctness = 'all' AND a.metric = 'edge' AND a.nodes = 'all'
          AND (a.n_labelled <> c.k OR abs(a.helps - c.helps / c.k) > 1e-12
               OR abs(a.helps + a.hurts + a.neutral - 1) > 1e-12)""",
}


def violations(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Count of offending rows per invariant; empty when the database is sound.

    Thresholds come from the file's meta score_rules (the defaults when it has none)."""
    row = con.execute("SELECT value FROM meta WHERE key = 'score_rules'").fetchall()
    rules = {"tau_stakes": 0.1, "epsilon": 0.05, **(json.loads(row[0][0]) if row else {})}
    out = {}
    for name, sql in CHECKS.items():
        params = {k: v for k, v in (("tau", rules["tau_stakes"]), ("eps", rules["epsilon"]))
                  if f"${k}" in sql}
        k = con.execute(sql, params).fetchall()[0][0]
        if k:
            out[name] = k
    return out
