"""One set of invariants every run database must satisfy, whoever wrote it (the engine or the
synthetic fixture): NULL scores carry no interval and no label, labels follow intervals,
summary shares are over labelled nodes, certain outcomes have no spread."""

from __future__ import annotations

import duckdb

CHECKS: dict[str, str] = {
    "interval or label where cos is NULL": """
        SELECT count(*) FROM scores WHERE cos IS NULL
          AND (cos_lo IS NOT NULL OR cos_hi IS NOT NULL OR label IS NOT NULL)""",
    "interval or label where beyond is NULL": """
        SELECT count(*) FROM scores WHERE beyond IS NULL
          AND (beyond_lo IS NOT NULL OR beyond_hi IS NOT NULL OR label_beyond IS NOT NULL)""",
    "no label or interval where cos is defined": """
        SELECT count(*) FROM scores WHERE cos IS NOT NULL
          AND (label IS NULL OR cos_lo IS NULL OR cos_hi IS NULL)""",
    "gain interval without gain": """
        SELECT count(*) FROM scores WHERE gain IS NULL AND (gain_lo IS NOT NULL
                                                        OR gain_hi IS NOT NULL)""",
    "label disagrees with its interval": """
        SELECT count(*) FROM scores WHERE
          (label = 'helps') <> coalesce(cos_lo > 0, false)
          OR (label = 'hurts') <> coalesce(cos_hi < 0, false)
          OR (label_beyond = 'helps') <> coalesce(beyond_lo > 0, false)
          OR (label_beyond = 'hurts') <> coalesce(beyond_hi < 0, false)""",
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
        WITH c AS (SELECT teacher, signal, count(label) AS k,
                          count(*) FILTER (label = 'helps') AS helps FROM scores GROUP BY ALL)
        SELECT count(*) FROM summary_alignment a JOIN c USING (teacher, signal)
        WHERE a.correctness = 'all' AND a.metric = 'cos'
          AND (a.n_labelled <> c.k OR abs(a.helps - c.helps / c.k) > 1e-12
               OR abs(a.helps + a.hurts + a.neutral - 1) > 1e-12)""",
}


def violations(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Count of offending rows per invariant; empty when the database is sound."""
    out = {}
    for name, sql in CHECKS.items():
        k = con.execute(sql).fetchone()[0]
        if k:
            out[name] = k
    return out
