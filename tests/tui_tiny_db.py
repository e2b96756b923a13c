"""A tiny, hand-checkable run database for the TUI tests (schema v3, summaries included).

Values are simple closed forms of (question, rollout, pos, teacher, signal) so tests can
recompute them independently; they follow the engine's rules (method.md revision 2):

- every rollout has 12 tokens; even positions are probed; position 10 has no signal (both
  candidates succeed equally often), so its cosines, edges, labels and best teacher are NULL;
- two candidates per node, N = 20 judged continuations each: the sampled one succeeds 15
  times, the other `ALT_SUCCESSES[pos]` times (q2: 14 at pos 4); at pos 2 the alternative is
  implausible (p and every q below pi), so C+ holds the sampled token only and stakes = 0;
- stakes = max - min of S_hat over C+, decisive = stakes >= 0.1 (pos 0, 4, 6, 8; q2 not 4);
- cos = `cos_value` (rkl) or half of it (fkl), cos_sharp = the sharpened control's cos,
  edge = cos - cos_sharp (the control's edge is 0, interval [0, 0]), other intervals point
  -+ 0.2 (cos clipped to [-1, 1]; beyond -+ 0.1);
- labels: helps / hurts only at decisive nodes whose interval lies beyond +-0.05;
- beyond = cos / 2, NULL ('sharpening_dominated') where g's residual share (pos 6) or d's
  (`d_residual_share`) is below rho = 0.05, and 'pure_sharpening' for the sharpened control;
- best teacher: the rkl edge leader of strong / weak leads by `margin`; best_prob =
  min(1, 0.5 + 2 margin); confident (best_teacher set) iff decisive and best_prob >= 0.9, else
  best_reason 'not_decisive' or 'tie'.

Includes hostile token texts (markup, ANSI escapes, partial UTF-8, a very long token) to
exercise sanitising.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb

from engine.runfile.schema import SCHEMA_VERSION, SUMMARY_TABLES, create_tables, create_views

TEACHERS = [("strong", "external", False, 0), ("weak", "self", False, 1),
            ("ctrl_sharpened", "control", True, 2)]
SHARPENED = 2
CONTRASTIVE = "weak"
"""The teacher whose prompt depends on the rollout (rollout_prompts)."""
"""Index of the sharpened control in TEACHERS: the reference of the edge."""
SIGNALS_ = ["rkl", "fkl"]
SIGNAL_FACTOR = {"rkl": 1.0, "fkl": 0.5}
QUESTIONS = ["q0", "q1", "q2"]
N_TOKENS = 12
HOSTILE = {3: "[bold red]x[/]", 5: "\x1b[31m", 7: "\ufffd", 9: "y" * 200}
RULES = {"tau_stakes": 0.1, "plausible": 0.01, "epsilon": 0.05, "margin": 0.1,
         "leader_share": 0.9, "rho": 0.05}
LEVELS = {"advantage": 0.9, "beyond": 0.95, "cos": 0.95, "edge": 0.95, "gain": 0.9, "s": 0.9,
          "stakes_candidate": 0.72}

N_CONT = 20
"""Judged continuations per candidate."""
SAMPLED_SUCCESSES = 15
ALT_SUCCESSES = {0: 5, 2: 14, 4: 9, 6: 12, 8: 1, 10: 15}
NO_SIGNAL_POS = 10
IMPLAUSIBLE_POS = 2
"""The alternative candidate here has p = q = 0.005 < pi: not in C+."""
G_DOMINATED_POS = 6
"""|Pg|^2 / |g|^2 = 0.03 < rho here: beyond is NULL for every teacher."""
HALF = 0.2
"""Half-width of the cos and edge intervals (beyond: HALF / 2)."""


def token_text(pos: int) -> str:
    return HOSTILE.get(pos, " a" if pos % 4 == 0 else ("\n" if pos % 4 == 1 else f"t{pos}"))


def cos_value(qi: int, rollout: int, pos: int, ti: int) -> float:
    """Deterministic rkl alignment in [-1, 1] of teacher `ti` (fkl: half of it)."""
    return round(math.sin(1.3 * qi + 0.7 * rollout + 0.9 * pos + 2.1 * ti), 6)


def successes(qi: int, pos: int) -> tuple[int, int]:
    """(s of the sampled candidate, s of the alternative), out of N_CONT."""
    alt = 14 if (qi == 2 and pos == 4) else ALT_SUCCESSES[pos]
    return SAMPLED_SUCCESSES, alt


def probs(pos: int) -> tuple[float, float]:
    """Student p of the two candidates."""
    return 0.6, (0.005 if pos == IMPLAUSIBLE_POS else 0.3)


def stakes_value(qi: int, pos: int) -> float:
    s0, s1 = successes(qi, pos)
    return 0.0 if pos == IMPLAUSIBLE_POS else abs(s0 - s1) / N_CONT


def is_decisive(qi: int, pos: int) -> bool:
    return stakes_value(qi, pos) >= RULES["tau_stakes"]


def has_signal(pos: int) -> bool:
    return pos % 2 == 0 and pos != NO_SIGNAL_POS


def score_cos(qi: int, rollout: int, pos: int, ti: int, signal: str) -> float:
    return cos_value(qi, rollout, pos, ti) * SIGNAL_FACTOR[signal]


def edge_value(qi: int, rollout: int, pos: int, ti: int, signal: str) -> float:
    """cos - cos_sharp: the sharpened control's cos is the reference."""
    return score_cos(qi, rollout, pos, ti, signal) - score_cos(qi, rollout, pos, SHARPENED, signal)


def d_residual_share(pos: int, ti: int) -> float:
    """|Pd|^2 / |d|^2: 0.02, 0.06 or 0.10 (0 for the sharpened control: pure sharpening)."""
    return 0.0 if ti == SHARPENED else round(0.02 + 0.04 * ((pos // 2 + ti) % 3), 6)


def g_residual_share(pos: int) -> float | None:
    if not has_signal(pos):
        return None
    return 0.03 if pos == G_DOMINATED_POS else 0.6


def label(lo: float | None, hi: float | None, decisive: bool) -> str | None:
    """The engine's rule (maths.label): a decisive node and an interval beyond +-epsilon."""
    if lo is None or hi is None:
        return None
    if decisive and lo > RULES["epsilon"]:
        return "helps"
    if decisive and hi < -RULES["epsilon"]:
        return "hurts"
    return "neutral"


def best(qi: int, rollout: int, pos: int) -> tuple[str | None, float | None, float | None,
                                                   str | None]:
    """(best_teacher, best_prob, best_margin, best_reason) by the rkl edge of strong / weak."""
    if not has_signal(pos):
        return None, None, None, None
    e0, e1 = (edge_value(qi, rollout, pos, ti, "rkl") for ti in (0, 1))
    leader = "strong" if e0 >= e1 else "weak"
    margin = round(abs(e0 - e1), 6)
    prob = round(min(1.0, 0.5 + 2 * margin), 6)
    if not is_decisive(qi, pos):
        return None, prob, margin, "not_decisive"
    if prob < RULES["leader_share"]:
        return None, prob, margin, "tie"
    return leader, prob, margin, None


def _clip(x: float, bound: float) -> float:
    return max(-bound, min(bound, x))


def build(path: Path) -> Path:
    con = duckdb.connect(str(path))
    create_tables(con)
    create_tables(con, SUMMARY_TABLES)
    con.executemany("INSERT INTO meta VALUES (?, ?)", [
        ["schema_version", str(SCHEMA_VERSION)],
        ["config_toml", '[student]\nmodel = "tiny-student"\n[nodes]\nstrategy = "stride:2"\n'],
        ["score_rules", json.dumps(RULES)],
        ["interval_levels", json.dumps(LEVELS)],
        ["rank_signal", "rkl"],
        ["sampling_temperature", "1.0"],
        ["sharpened_temperature", "0.5"],
    ])
    for name, kind, ctrl, ordinal in TEACHERS:
        con.execute("INSERT INTO teachers VALUES (?, ?, ?, 'm', 'Q:{question}', 1.0, ?, ?)",
                    [name, kind, ctrl, f"{name} teacher", ordinal])
    for s in SIGNALS_:
        con.execute("INSERT INTO signals VALUES (?, 'loss', NULL, ?)", [s, s == "rkl"])
    rows: dict[str, list[list[object]]] = {t: [] for t in (
        "questions", "teacher_prompts", "rollout_prompts", "contexts", "rollouts", "tokens",
        "nodes", "candidates", "candidate_teacher", "node_teacher", "scores")}
    for qi, q in enumerate(QUESTIONS):
        n_correct = qi % 3
        rows["questions"].append([q, qi, "arith", f"what is {qi}?", "sol", "42", "ok", None, 2,
                                  n_correct, 2 * (N_TOKENS // 2), 0, 0, 0.1])
        for ti_name, *_ in TEACHERS:
            if ti_name != CONTRASTIVE:
                rows["teacher_prompts"].append([q, ti_name, f"{ti_name} sees Q{qi}\x1b[2J", 5])
        # the contrastive teacher sees a prompt of its own at each rollout
        for r in range(2):
            rows["rollout_prompts"].append([q, r, CONTRASTIVE, f"contrast for Q{qi} r{r}", 4])
        rows["contexts"].append([q, "summary", "student", f"Summarise Q{qi}", f"sum of Q{qi}", 3])
        for r in range(2):
            correct = r < n_correct
            rows["rollouts"].append([q, r, correct, "correct" if correct else "incorrect", "",
                                     N_TOKENS, True, "Q:", "text"])
            for pos in range(N_TOKENS):
                _add_token(rows, qi, q, r, pos)
    for table, values in rows.items():
        marks = ", ".join("?" * len(values[0]))
        con.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
    _summaries(con)
    create_views(con)
    con.close()
    return path


def _add_token(rows: dict[str, list[list[object]]], qi: int, q: str, r: int, pos: int) -> None:
    text = token_text(pos)
    special = pos == N_TOKENS - 1
    probed = pos % 2 == 0
    rows["tokens"].append([q, r, pos, pos, "<eos>" if special else text,
                           b"\xe2\x82" if pos == 7 else text.encode(), special, -0.5, 0.1 * pos,
                           probed])
    if not probed:
        return
    signal = has_signal(pos)
    decisive = is_decisive(qi, pos)
    p = probs(pos)
    s = successes(qi, pos)
    s_hat = [x / N_CONT for x in s]
    m_s = p[0] + p[1]
    v_hat = (p[0] * s_hat[0] + p[1] * s_hat[1]) / m_s
    g = [p[c] * (s_hat[c] - v_hat) if signal else 0.0 for c in range(2)]
    g_norm2 = g[0] ** 2 + g[1] ** 2
    h_norm2 = 0.2
    share = g_residual_share(pos)
    gh = math.sqrt((1 - share) * g_norm2 * h_norm2) if share is not None else 0.0
    stakes = stakes_value(qi, pos)
    best_teacher, best_prob, best_margin, best_reason = best(qi, r, pos)
    rows["nodes"].append([
        q, r, pos, v_hat, s_hat[0] - v_hat, m_s, 2, 2 * N_CONT, g_norm2, h_norm2, gh, share,
        1 if pos == IMPLAUSIBLE_POS else 2, stakes, max(0.0, stakes - 0.1),
        min(1.0, stakes + 0.1), decisive, None if signal else "no_signal", best_teacher,
        best_prob, best_margin, best_reason])
    for c in range(2):
        plausible = c == 0 or pos != IMPLAUSIBLE_POS
        rows["candidates"].append([
            q, r, pos, c, pos + c, text if c == 0 else "alt", c == 0,
            "sampled,student" if c == 0 else "student", plausible, p[c], s[c], N_CONT,
            s[c] // 2, N_CONT // 2, 0, False, s_hat[c], max(0.0, s_hat[c] - 0.1),
            min(1.0, s_hat[c] + 0.1), g[c], 0.02 if c == 0 else -0.01, "ok text", None])
        for name, *_ in TEACHERS:
            q_c = 0.005 if not plausible else 0.5 + 0.1 * c
            rows["candidate_teacher"].append([q, r, pos, c, name, q_c, 0, 0, 0, 0])
    for ti, (name, *_rest) in enumerate(TEACHERS):
        edge_rkl = edge_value(qi, r, pos, ti, "rkl") if signal else None
        rows["node_teacher"].append([
            q, r, pos, name, 0.9, 0.01 * ti if signal else 0.0, 0, 0.1, 0, 0,
            None if edge_rkl is None else edge_rkl + 0.01,
            None if edge_rkl is None else edge_rkl - 0.01,
            1.0, 0.05 * pos + ti, 0.2, 0.1, 0.5, 1, -0.3])
        for sig in SIGNALS_:
            rows["scores"].append(_score_row(qi, q, r, pos, ti, name, sig, decisive))


def _score_row(qi: int, q: str, r: int, pos: int, ti: int, name: str, sig: str,
               decisive: bool) -> list[object]:
    d_share = d_residual_share(pos, ti)
    head: list[object] = [q, r, pos, name, sig, 1.0, 0.1]
    if not has_signal(pos):  # no_signal: the gain is defined (0), every cosine is NULL
        return head + [0.0, None, None, None, None, None, d_share, None, None, None, None,
                       None, None, 0.0, 0.0, None, None, None, "no_signal", None]
    cos = score_cos(qi, r, pos, ti, sig)
    cos_sharp = score_cos(qi, r, pos, SHARPENED, sig)
    edge = cos - cos_sharp
    cos_lo, cos_hi = _clip(cos - HALF, 1), _clip(cos + HALF, 1)
    edge_lo, edge_hi = _clip(edge - HALF, 2), _clip(edge + HALF, 2)
    if ti == SHARPENED:  # the reference: its edge is 0 in every draw
        edge_lo = edge_hi = 0.0
    reason = None
    beyond = beyond_lo = beyond_hi = None
    if ti == SHARPENED:
        reason = "pure_sharpening"
    elif d_share < RULES["rho"] or (g_residual_share(pos) or 0) < RULES["rho"]:
        reason = "sharpening_dominated"
    else:
        beyond = cos / 2
        beyond_lo, beyond_hi = beyond - HALF / 2, beyond + HALF / 2
    gain = cos / 10
    return head + [gain, cos, cos, cos_sharp, edge, beyond, d_share, cos_lo, cos_hi, edge_lo,
                   edge_hi, beyond_lo, beyond_hi, gain - 0.01, gain + 0.01,
                   label(cos_lo, cos_hi, decisive), label(edge_lo, edge_hi, decisive),
                   label(beyond_lo, beyond_hi, decisive), reason, None]


def _summaries(con: duckdb.DuckDBPyConnection) -> None:
    """Summary tables as the engine defines them, with a fixed +-0.05 'bootstrap' interval.

    Means, counts and label shares are exact SQL over the rows above (engine/summaries.py
    semantics); only the question-bootstrap quantiles are replaced by mean -+ 0.05.
    """
    metrics = {"edge": ("s.edge", "s.label_edge"), "cos": ("s.cos", "s.label"),
               "beyond": ("s.beyond", "s.label_beyond"), "cos_c": ("s.cos_c", None),
               "gain": ("s.gain", None), "advantage": ("s.advantage", None)}
    for node_set, where in (("all", "true"), ("decisive", "n.decisive")):
        for metric, (col, lab) in metrics.items():
            labelled = (f"count({lab}), count(*) FILTER ({lab} = 'helps') / "
                        f"nullif(count({lab}), 0), count(*) FILTER ({lab} = 'hurts') / "
                        f"nullif(count({lab}), 0), count(*) FILTER ({lab} = 'neutral') / "
                        f"nullif(count({lab}), 0)") if lab else "NULL, NULL, NULL, NULL"
            con.execute(f"""
                INSERT INTO summary_alignment
                SELECT teacher, te.is_control, signal, correctness, '{node_set}', '{metric}',
                       count({col}), 1 - count({col}) / count(*), avg({col}),
                       avg({col}) - 0.05, avg({col}) + 0.05, {labelled}
                FROM (SELECT s.*, nt.advantage, n.decisive,
                             CASE WHEN r.correct THEN 'correct' ELSE 'incorrect' END AS corr
                      FROM scores s JOIN rollouts r USING (question_id, rollout)
                      JOIN nodes n USING (question_id, rollout, pos)
                      JOIN node_teacher nt USING (question_id, rollout, pos, teacher)
                      WHERE {where}) s
                CROSS JOIN (VALUES ('correct'), ('incorrect'), ('all')) c(correctness)
                JOIN teachers te USING (teacher)
                WHERE correctness = 'all' OR correctness = s.corr
                GROUP BY ALL""")
    con.execute("""
        INSERT INTO summary_best
        WITH per AS (
            SELECT s.question_id AS key, s.teacher, avg(s.edge) AS m, count(*) AS n
            FROM scores s JOIN nodes n USING (question_id, rollout, pos)
            JOIN teachers t USING (teacher)
            WHERE s.signal = 'rkl' AND s.edge IS NOT NULL AND n.decisive AND NOT t.is_control
            GROUP BY ALL),
        ranked AS (SELECT *, row_number() OVER (PARTITION BY key ORDER BY m DESC, teacher)
                   AS rk FROM per)
        SELECT 'question', key, max(teacher) FILTER (rk = 1), max(m) FILTER (rk = 1),
               max(teacher) FILTER (rk = 2), max(m) FILTER (rk = 1) - max(m) FILTER (rk = 2),
               max(n) FILTER (rk = 1)
        FROM ranked GROUP BY key""")
    con.execute("""
        INSERT INTO summary_question_teacher
        SELECT s.question_id, s.teacher, s.signal, count(*), count(*) FILTER (n.decisive),
               avg(s.cos), avg(s.edge), avg(s.edge) FILTER (n.decisive),
               count(*) FILTER (s.label_edge = 'helps'), count(*) FILTER (s.label_edge = 'hurts'),
               count(*) FILTER (s.label_edge = 'neutral')
        FROM scores s JOIN nodes n USING (question_id, rollout, pos)
        GROUP BY ALL""")


def live_dir(db: Path, root: Path, questions: list[str]) -> Path:
    """A run directory still being written: run tables and one part per question."""
    con = duckdb.connect(str(db), read_only=True)
    (root / "run").mkdir(parents=True, exist_ok=True)
    for table in ("meta", "teachers", "signals"):
        con.execute(f"COPY {table} TO '{root}/run/{table}.parquet'")
    for q in questions:
        part = root / "parts" / q
        part.mkdir(parents=True, exist_ok=True)
        for table in ("questions", "rollouts", "tokens", "teacher_prompts", "rollout_prompts",
                      "contexts", "nodes", "candidates", "candidate_teacher", "node_teacher",
                      "scores"):
            con.execute(f"COPY (SELECT * FROM {table} WHERE question_id = '{q}') "
                        f"TO '{part}/{table}.parquet'")
    con.close()
    return root
