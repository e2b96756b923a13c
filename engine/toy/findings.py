"""What the toy demo shows, computed from its database alone (`opd-engine toy findings`).

Nodes are classed by what the continuations found, not by what we planted: a node is
*decisive* when the student's favourite candidate succeeds at least 0.5 less often than the best
candidate, and a *misconception strike* when, in a subtraction, that favourite is "=" where the
best continuation is "-" (the borrow paid back: "10-7-1=2", not "10-7=3"). The specialist-vs-strong
comparison redraws S from its Jeffreys posterior for both teachers with the same draws (paired),
from the stored p, s, n, d, h, |d|^2, <h,d>, |h|^2, exactly as the engine scores a node, and
compares their edge over the sharpened student (for reverse KL the reference is cos(g, h)).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
from rich.console import Console
from rich.table import Table

from engine import maths
from engine.inputs.config import ScoreConfig
from engine.rng import generator, sequence_key

NODE_CLASSES_SQL = """
WITH ranked AS (
    SELECT c.*, q.family,
           row_number() OVER (PARTITION BY question_id, rollout, pos ORDER BY p DESC, cand)
               AS by_p,
           row_number() OVER (PARTITION BY question_id, rollout, pos ORDER BY s_hat DESC, p DESC)
               AS by_s
    FROM candidates c JOIN questions q USING (question_id)
), fav AS (SELECT * FROM ranked WHERE by_p = 1), best AS (SELECT * FROM ranked WHERE by_s = 1)
SELECT n.question_id, n.rollout, n.pos, fav.family,
       CASE WHEN n.null_reason IS NOT NULL THEN 'no signal'
            WHEN best.s_hat - fav.s_hat >= 0.5 AND fav.family = 'sub' AND fav.token_text = '='
                 AND best.token_text = '-' THEN 'misconception strike'
            WHEN best.s_hat - fav.s_hat >= 0.5 THEN 'other decisive'
            ELSE 'favourite fine' END AS node_class
FROM nodes n
JOIN fav USING (question_id, rollout, pos)
JOIN best USING (question_id, rollout, pos)
"""

CLASSES = ("misconception strike", "other decisive", "favourite fine")
def _rules(con: duckdb.DuckDBPyConnection) -> ScoreConfig:
    """The run's own thresholds (meta score_rules), so findings use the engine's margin."""
    row = con.execute("SELECT value FROM meta WHERE key = 'score_rules'").fetchall()
    return ScoreConfig(**json.loads(row[0][0])) if row else ScoreConfig()


@dataclass(frozen=True)
class PairwiseResult:
    node_class: str
    nodes: int
    a_wins: float  # share of nodes where P(edge_a >= edge_b + margin) >= leader_share
    b_wins: float  # share where P(edge_b >= edge_a + margin) >= leader_share
    a_mean: float
    b_mean: float


def _node_arrays(con: duckdb.DuckDBPyConnection, keys: list[tuple], teachers: Sequence[str]
                 ) -> dict[str, np.ndarray]:
    """Candidate-level arrays (M, K) for the given nodes, and per-teacher rKL quantities."""
    con.execute("CREATE OR REPLACE TEMP TABLE _keys (question_id VARCHAR, rollout SMALLINT, "
                "pos INTEGER, i INTEGER)")
    con.executemany("INSERT INTO _keys VALUES (?, ?, ?, ?)",
                    [(*k, i) for i, k in enumerate(keys)])
    m = len(keys)
    k = con.execute("SELECT max(n_candidates) FROM nodes JOIN _keys USING "
                    "(question_id, rollout, pos)").fetchone()[0] or 1
    out = {name: np.zeros((m, k)) for name in ("p", "s", "n", "h")}
    out["mask"] = np.zeros((m, k), dtype=bool)
    out["deterministic"] = np.zeros((m, k), dtype=bool)
    for i, cand, p, s, n, h, det in con.execute("""SELECT i, cand, p, s, n, h, deterministic
                                                   FROM candidates JOIN _keys
                                                   USING (question_id, rollout, pos)
                                                """).fetchall():
        out["p"][i, cand], out["s"][i, cand], out["n"][i, cand], out["h"][i, cand] = p, s, n, h
        out["mask"][i, cand], out["deterministic"][i, cand] = True, det
    out["h2"] = np.zeros(m)
    for i, h2 in con.execute("SELECT i, h_norm2 FROM nodes JOIN _keys USING "
                             "(question_id, rollout, pos)").fetchall():
        out["h2"][i] = h2
    for t in teachers:
        d = np.zeros((m, k))
        for i, cand, dv in con.execute("""SELECT i, cand, d_rkl FROM candidate_teacher
                                          JOIN _keys USING (question_id, rollout, pos)
                                          WHERE teacher = ?""", [t]).fetchall():
            d[i, cand] = dv
        dn, hd = np.zeros(m), np.zeros(m)
        for i, a, b in con.execute("""SELECT i, d_norm2, hd FROM scores JOIN _keys
                                      USING (question_id, rollout, pos)
                                      WHERE teacher = ? AND signal = 'rkl'""", [t]).fetchall():
            dn[i], hd[i] = a, b
        out[f"d/{t}"], out[f"dn/{t}"], out[f"hd/{t}"] = d, dn, hd
    return out


def pairwise(con: duckdb.DuckDBPyConnection, a: str, b: str, *, draws: int = 200,
             seed: int = 0) -> list[PairwiseResult]:
    """Paired Jeffreys comparison of two teachers' rKL edge per node class."""
    classes = con.execute(NODE_CLASSES_SQL).fetchall()
    rules = _rules(con)
    results = []
    for cls in CLASSES:
        # sorted: the draws go to nodes by index, and the class query has no row order
        keys = sorted((q, r, t) for q, r, t, _, c in classes if c == cls)
        if not keys:
            continue
        arr = _node_arrays(con, keys, (a, b))
        rng = generator(sequence_key(seed, "bootstrap", f"findings:{cls}"))
        s_draw = maths.jeffreys_draws(arr["s"], arr["n"], draws, rng, arr["deterministic"])
        _, g_b = maths.ideal_direction(arr["p"], s_draw, arr["mask"])
        ref = maths.sharpened_cos(g_b, arr["h"], arr["h2"], arr["mask"])  # cos(g, h): rKL
        edge = {}
        for t in (a, b):
            edge[t] = maths.alignment(g_b, arr[f"d/{t}"], arr[f"dn/{t}"], arr[f"hd/{t}"],
                                      arr["h"], arr["h2"], arr["mask"], ref)["edge"]  # (B, M)
        diff = edge[a] - edge[b]
        valid = ~np.isnan(diff)
        # scores that saturate for both differ in the 5th decimal: that is no win
        p_a = np.where(valid, diff >= rules.margin, False).mean(0)
        p_b = np.where(valid, diff <= -rules.margin, False).mean(0)
        with np.errstate(invalid="ignore"):
            mean_a = float(np.nanmean(np.nanmean(edge[a], 0)))
            mean_b = float(np.nanmean(np.nanmean(edge[b], 0)))
        results.append(PairwiseResult(cls, len(keys), float((p_a >= rules.leader_share).mean()),
                                      float((p_b >= rules.leader_share).mean()), mean_a, mean_b))
    return results


def class_table(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Per teacher and node class: nodes, mean plain rKL cosine and edge, edge-label shares,
    mean gain and teacher advantage."""
    return con.execute(f"""
        WITH cls AS ({NODE_CLASSES_SQL})
        SELECT s.teacher, te.is_control, cls.node_class, count(*) AS nodes,
               avg(s.cos) AS cos, avg(s.edge) AS edge,
               avg(CASE WHEN s.label_edge = 'helps' THEN 1.0 WHEN s.label_edge IS NULL
                   THEN NULL ELSE 0.0 END) AS helps,
               avg(CASE WHEN s.label_edge = 'hurts' THEN 1.0 WHEN s.label_edge IS NULL
                   THEN NULL ELSE 0.0 END) AS hurts,
               1e3 * avg(s.gain) AS gain, avg(nt.advantage) AS advantage
        FROM scores s JOIN cls USING (question_id, rollout, pos)
        JOIN node_teacher nt USING (question_id, rollout, pos, teacher)
        JOIN teachers te USING (teacher)
        WHERE s.signal = 'rkl' AND cls.node_class <> 'no signal'
        GROUP BY ALL ORDER BY te.is_control, s.teacher, cls.node_class""").fetchall()


def print_findings(con: duckdb.DuckDBPyConnection, console: Console | None = None) -> None:
    console = console or Console()
    counts = dict(con.execute(f"SELECT node_class, count(*) FROM ({NODE_CLASSES_SQL}) "
                              "GROUP BY 1").fetchall())
    console.print("probed nodes by class: " + ", ".join(f"{k} {v}" for k, v in
                                                        sorted(counts.items())))
    t = Table(title="Reverse KL by node class (edge = cos minus the sharpened student's; "
              "helps/hurts: edge labels, decisive nodes only)", title_justify="left")
    for col in ("teacher", "node class", "nodes", "cos", "edge", "helps", "hurts",
                "gain ×1e-3", "advantage"):
        t.add_column(col, no_wrap=True)
    last = None
    for teacher, ctrl, cls, n, cos, bey, helps, hurts, gain, adv in class_table(con):
        if last is not None and teacher != last:
            t.add_section()
        last = teacher

        def f(x: float | None, fmt: str = "+.3f") -> str:
            return "–" if x is None else format(x, fmt)

        t.add_row(teacher + ("*" if ctrl else ""), cls, str(n), f(cos), f(bey),
                  f(helps, ".2f"), f(hurts, ".2f"), f(gain, "+.2f"), f(adv, "+.4f"))
    console.print(t)
    teachers = [r[0] for r in con.execute("SELECT teacher FROM teachers").fetchall()]
    if {"specialist", "strong"} <= set(teachers):
        rules = _rules(con)
        p = Table(title="Specialist vs strong, paired Jeffreys draws: share of nodes where one "
                  f"is ahead by >= {rules.margin} (the best-teacher margin) with probability >= "
                  f"{rules.leader_share}", title_justify="left")
        for col in ("node class", "nodes", "specialist ahead", "strong ahead",
                    "mean edge specialist", "mean edge strong"):
            p.add_column(col)
        for r in pairwise(con, "specialist", "strong"):
            p.add_row(r.node_class, str(r.nodes), f"{r.a_wins:.0%}", f"{r.b_wins:.0%}",
                      f"{r.a_mean:+.3f}", f"{r.b_mean:+.3f}")
        console.print(p)
    sw = con.execute("SELECT unit, oracle_gain, lo, hi, switch_rate, n_pairs FROM "
                     "summary_oracle").fetchall()
    for unit, gain, lo, hi, rate, pairs in sw:
        g = "–" if gain is None else f"{gain:+.3f} [{lo:+.3f},{hi:+.3f}]"
        r = "–" if rate is None else f"{rate:.1%}"
        console.print(f"cross-fitted oracle gain at decisive nodes ({unit}): {g}; confident "
                      f"best-teacher switches between consecutive decisive nodes: {r} of "
                      f"{pairs} pairs")
    console.print("* control")
