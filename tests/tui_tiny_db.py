"""A tiny, hand-checkable run database for the TUI tests (schema-valid, summaries included).

Values are simple closed forms of (question, rollout, pos, teacher) so tests can recompute
them independently. Includes hostile token texts (markup, ANSI escapes, partial UTF-8, a very
long token) to exercise sanitising.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb

from engine.schema import SCHEMA_VERSION, SUMMARY_TABLES, create_tables, create_views

TEACHERS = [("strong", "external", False, 0), ("weak", "self", False, 1),
            ("ctrl_sharpened", "control", True, 2)]
SIGNALS_ = ["rkl", "fkl"]
QUESTIONS = ["q0", "q1", "q2"]
N_TOKENS = 12
HOSTILE = {3: "[bold red]x[/]", 5: "\x1b[31m", 7: "\ufffd", 9: "y" * 200}


def token_text(pos: int) -> str:
    return HOSTILE.get(pos, " a" if pos % 4 == 0 else ("\n" if pos % 4 == 1 else f"t{pos}"))


def cos_value(qi: int, rollout: int, pos: int, ti: int) -> float:
    """Deterministic alignment in [-1, 1] used for every score."""
    return round(math.sin(1.3 * qi + 0.7 * rollout + 0.9 * pos + 2.1 * ti), 6)


def build(path: Path) -> Path:
    con = duckdb.connect(str(path))
    create_tables(con)
    create_tables(con, SUMMARY_TABLES)
    con.execute("INSERT INTO meta VALUES ('schema_version', ?), ('config_toml', ?)", [
        str(SCHEMA_VERSION),
        '[student]\nmodel = "tiny-student"\n[nodes]\nstrategy = "stride:2"\n',
    ])
    for name, kind, ctrl, ordinal in TEACHERS:
        con.execute("INSERT INTO teachers VALUES (?, ?, ?, 'm', 'Q:{question}', 1.0, ?, ?)",
                    [name, kind, ctrl, f"{name} teacher", ordinal])
    for s in SIGNALS_:
        con.execute("INSERT INTO signals VALUES (?, 'loss', NULL, ?)", [s, s == "rkl"])
    for qi, q in enumerate(QUESTIONS):
        n_correct = qi % 3
        con.execute(
            "INSERT INTO questions VALUES (?, ?, 'arith', ?, 'sol', '42', 'ok', NULL, 2, ?, ?, "
            "0, 0, 0.1)", [q, qi, f"what is {qi}?", n_correct, 2 * (N_TOKENS // 2)])
        for ti_name, *_ in TEACHERS:
            con.execute("INSERT INTO teacher_prompts VALUES (?, ?, ?, 5)",
                        [q, ti_name, f"{ti_name} sees Q{qi}\x1b[2J"])
        for r in range(2):
            correct = r < n_correct
            con.execute(
                "INSERT INTO rollouts VALUES (?, ?, ?, ?, '', ?, true, 'Q:', 'text')",
                [q, r, correct, "correct" if correct else "incorrect", N_TOKENS])
            for pos in range(N_TOKENS):
                text = token_text(pos)
                special = pos == N_TOKENS - 1
                probed = pos % 2 == 0
                con.execute(
                    "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [q, r, pos, pos, "<eos>" if special else text,
                     b"\xe2\x82" if pos == 7 else text.encode(), special, -0.5,
                     0.1 * pos, probed])
                if not probed:
                    continue
                con.execute(
                    "INSERT INTO nodes VALUES (?, ?, ?, 0.5, ?, 0.9, 2, 4, 0.1, 0.2, 0.05, "
                    "NULL, ?, 0.95)", [q, r, pos, 0.25 if pos % 4 == 0 else -0.25,
                                       TEACHERS[pos % 2][0]])
                for c in range(2):
                    con.execute(
                        "INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?, 'student', ?, ?, 4, "
                        "1, 2, 0, false, ?, 0.1, 0.9, ?, 0.01, 'ok text', NULL)",
                        [q, r, pos, c, pos + c, text if c == 0 else "alt", c == 0,
                         0.6 - 0.2 * c, 3 - c, (3 - c) / 4, 0.05 * (1 - 2 * c)])
                    for name, *_ in TEACHERS:
                        con.execute(
                            "INSERT INTO candidate_teacher VALUES (?, ?, ?, ?, ?, ?, 0, 0, 0, 0)",
                            [q, r, pos, c, name, 0.5 + 0.1 * c])
                for ti, (name, *_rest) in enumerate(TEACHERS):
                    con.execute(
                        "INSERT INTO node_teacher VALUES (?, ?, ?, ?, 0.9, ?, 0, 0.1, 0, 0, 0, 0,"
                        " 1.0, ?, 0.2, 0.1, 0.5, 1, -0.3)",
                        [q, r, pos, name, 0.01 * ti, 0.05 * pos + ti])
                    for s in SIGNALS_:
                        cos = cos_value(qi, r, pos, ti) * (1 if s == "rkl" else 0.5)
                        label = "helps" if cos > 0.5 else ("hurts" if cos < -0.5 else "neutral")
                        con.execute(
                            "INSERT INTO scores VALUES (?, ?, ?, ?, ?, 1, 0.1, ?, ?, ?, ?, "
                            "?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                            [q, r, pos, name, s, cos / 10, cos, cos, cos / 2, cos - 0.2,
                             cos + 0.2, cos / 2 - 0.1, cos / 2 + 0.1, cos / 10 - 0.01,
                             cos / 10 + 0.01, label, label])
    for name, _kind, ctrl, _o in TEACHERS:
        for s in SIGNALS_:
            for corr in ("correct", "incorrect"):
                for metric in ("cos", "beyond", "gain", "advantage"):
                    con.execute(
                        "INSERT INTO summary_alignment VALUES (?, ?, ?, ?, ?, 10, 0.1, ?, ?, ?, "
                        "10, 0.3, 0.2, 0.5)",
                        [name, ctrl, s, corr, metric, 0.4 if corr == "incorrect" else 0.1,
                         0.3, 0.5])
    for q in QUESTIONS:
        con.execute("INSERT INTO summary_best VALUES ('question', ?, 'strong', 0.3, 'weak', "
                    "0.1, 5)", [q])
    con.execute("""INSERT INTO summary_question_teacher
        SELECT question_id, teacher, signal, count(*), avg(cos), avg(beyond),
               count(*) FILTER (label = 'helps'), count(*) FILTER (label = 'hurts'),
               count(*) FILTER (label = 'neutral')
        FROM scores GROUP BY ALL""")
    create_views(con)
    con.close()
    return path


def live_dir(db: Path, root: Path, questions: list[str]) -> Path:
    """A run directory still being written: run tables and one part per question."""
    con = duckdb.connect(str(db), read_only=True)
    (root / "run").mkdir(parents=True, exist_ok=True)
    for table in ("meta", "teachers", "signals"):
        con.execute(f"COPY {table} TO '{root}/run/{table}.parquet'")
    for q in questions:
        part = root / "parts" / q
        part.mkdir(parents=True, exist_ok=True)
        for table in ("questions", "rollouts", "tokens", "teacher_prompts", "nodes",
                      "candidates", "candidate_teacher", "node_teacher", "scores"):
            con.execute(f"COPY (SELECT * FROM {table} WHERE question_id = '{q}') "
                        f"TO '{part}/{table}.parquet'")
    con.close()
    return root
