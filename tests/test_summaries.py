"""Materialised summaries against plain-Python recomputations and hand-built cases."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pytest
from synthetic_runs import write_fixture_db

from engine.runfile import schema
from engine.runfile.summaries import materialise_summaries, spearman


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("summaries") / "run.duckdb"
    return write_fixture_db(out, questions=10, rollouts=3, min_len=10, max_len=40, draws=100,
                            seed=2)


@pytest.fixture(scope="module")
def db(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=True)
    yield con
    con.close()


def _summary(db: duckdb.DuckDBPyConnection, teacher: str, signal: str, corr: str,
             metric: str, nodes: str = "all") -> dict:
    cols = schema.SUMMARY_TABLES[0].column_names
    row = db.execute("SELECT * FROM summary_alignment WHERE teacher = ? AND signal = ? AND "
                     "correctness = ? AND metric = ? AND nodes = ?",
                     [teacher, signal, corr, metric, nodes]).fetchone()
    return dict(zip(cols, row, strict=True))


@pytest.mark.parametrize("nodes", ["all", "decisive"])
@pytest.mark.parametrize("corr", ["correct", "incorrect", "all"])
def test_alignment_means_match_a_plain_loop(db: duckdb.DuckDBPyConnection, corr: str,
                                            nodes: str) -> None:
    rows = db.execute("""SELECT s.cos, s.edge, s.beyond, s.gain, s.label, s.label_edge,
                                r.correct, n.decisive FROM scores s
        JOIN rollouts r USING (question_id, rollout) JOIN nodes n USING (question_id, rollout, pos)
        WHERE s.teacher = 'strong' AND s.signal = 'rkl'""").fetchall()
    keep = [r for r in rows if (corr == "all" or r[6] is (corr == "correct"))
            and (nodes == "all" or r[7])]
    assert keep
    for metric, i in (("cos", 0), ("edge", 1), ("beyond", 2), ("gain", 3)):
        values = [r[i] for r in keep if r[i] is not None]
        got = _summary(db, "strong", "rkl", corr, metric, nodes)
        assert got["n"] == len(values)
        assert got["mean"] == pytest.approx(sum(values) / len(values), rel=1e-12)
        assert got["null_share"] == pytest.approx(1 - len(values) / len(keep))
    for metric, i in (("cos", 4), ("edge", 5)):
        labels = [r[i] for r in keep if r[i] is not None]
        got = _summary(db, "strong", "rkl", corr, metric, nodes)
        assert got["n_labelled"] == len(labels) == got["n"]  # a label exactly where defined
        for lab in ("helps", "hurts", "neutral"):
            assert got[lab] == pytest.approx(labels.count(lab) / len(labels))


def test_advantage_is_signal_independent_and_matches_a_loop(db: duckdb.DuckDBPyConnection) -> None:
    values = [r[0] for r in db.execute("""SELECT advantage FROM node_teacher nt
        JOIN rollouts r USING (question_id, rollout) WHERE teacher = 'self_answer'
        AND r.correct = false""").fetchall()]
    means = {s: _summary(db, "self_answer", s, "incorrect", "advantage")["mean"]
             for s in schema.SIGNALS}
    assert len(set(means.values())) == 1
    assert means["rkl"] == pytest.approx(sum(values) / len(values), rel=1e-12)


def test_bootstrap_interval_contains_the_mean(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute("""SELECT teacher, signal, metric, lo, mean, hi FROM summary_alignment
        WHERE correctness = 'all' AND mean IS NOT NULL""").fetchall()
    assert len(rows) > 50
    for teacher, signal, metric, lo, mean, hi in rows:
        assert lo <= mean <= hi, (teacher, signal, metric)


def test_bootstrap_interval_shrinks_as_questions_grow(tmp_path: Path) -> None:
    widths = []
    for n in (6, 60):
        out = write_fixture_db(tmp_path / f"{n}.duckdb", questions=n, rollouts=2, min_len=5,
                               max_len=15, signals=("rkl",), draws=200, seed=9)
        con = duckdb.connect(str(out), read_only=True)
        widths.append(dict(con.execute("""SELECT teacher, hi - lo FROM summary_alignment
            WHERE signal = 'rkl' AND correctness = 'all' AND metric = 'cos'""").fetchall()))
        con.close()
    for teacher, wide in widths[0].items():
        assert widths[1][teacher] < wide, teacher


def test_bootstrap_is_keyed_by_seed(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.duckdb"
    shutil.copy(path, copy)
    con = duckdb.connect(str(copy))
    query = "SELECT lo, hi FROM summary_alignment ORDER BY ALL"
    materialise_summaries(con, draws=50, seed=1)
    first = con.execute(query).fetchall()
    materialise_summaries(con, draws=50, seed=1)
    assert con.execute(query).fetchall() == first
    materialise_summaries(con, draws=50, seed=2)
    assert con.execute(query).fetchall() != first
    assert '"draws": 50' in schema.read_meta(con)["summary_bootstrap"]
    with pytest.raises(ValueError, match="draws must be at least 1"):
        materialise_summaries(con, draws=0)
    con.close()


def test_summary_best_matches_a_plain_loop(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute("""SELECT s.question_id, q.family, s.teacher, s.edge FROM scores s
        JOIN questions q USING (question_id) JOIN teachers t USING (teacher)
        JOIN nodes n USING (question_id, rollout, pos)
        WHERE s.signal = 'rkl' AND s.edge IS NOT NULL AND n.decisive AND NOT t.is_control
        """).fetchall()
    groups: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for qid, family, teacher, beyond in rows:
        for key in (("question", qid), ("family", family), ("run", "all")):
            groups[key][teacher].append(beyond)
    stored = {(r[0], r[1]): r[2:] for r in db.execute("SELECT * FROM summary_best").fetchall()}
    assert set(stored) == set(groups)
    for key, per_teacher in groups.items():
        ranked = sorted(((-sum(v) / len(v), t, len(v)) for t, v in per_teacher.items()))
        best, best_mean, runner, margin, n = stored[key]
        assert (best, n) == (ranked[0][1], ranked[0][2])
        assert best_mean == pytest.approx(-ranked[0][0])
        assert runner == ranked[1][1]
        assert margin == pytest.approx(ranked[1][0] - ranked[0][0])


def test_summary_position_matches_a_plain_loop(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute("""SELECT s.pos, r.n_tokens, s.cos, s.label_edge, s.edge, n.decisive
        FROM scores s JOIN rollouts r USING (question_id, rollout)
        JOIN nodes n USING (question_id, rollout, pos)
        WHERE s.signal = 'rkl' AND s.teacher = 'specialist' AND r.correct""").fetchall()
    by_decile: dict[int, list] = defaultdict(list)
    for pos, n_tokens, cos, label, edge, decisive in rows:
        by_decile[min(10 * pos // n_tokens, 9)].append((cos, label, edge, decisive))
    stored = {r[0]: r[1:] for r in db.execute("""SELECT decile, n, n_decisive, mean_cos,
        mean_edge, helps, hurts FROM summary_position WHERE teacher = 'specialist'
        AND correctness = 'correct'""").fetchall()}
    assert set(stored) == set(by_decile)
    for decile, items in by_decile.items():
        cos = [c for c, *_ in items if c is not None]
        edge = [e for _, _, e, _ in items if e is not None]
        labels = [lab for _, lab, _, _ in items if lab is not None]
        n, n_decisive, mean_cos, mean_edge, helps, hurts = stored[decile]
        assert n == len(items) and n_decisive == sum(d for *_, d in items)
        assert mean_cos == pytest.approx(sum(cos) / len(cos))
        assert mean_edge == pytest.approx(sum(edge) / len(edge))
        assert helps == pytest.approx(labels.count("helps") / len(labels))
        assert hurts == pytest.approx(labels.count("hurts") / len(labels))


def _plain_spearman(x: list[float], y: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return out

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var


def test_summary_proxy_matches_a_plain_spearman(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute("""SELECT nt.sampled_rank, t.entropy, s.edge FROM scores s
        JOIN node_teacher nt USING (question_id, rollout, pos, teacher)
        JOIN tokens t USING (question_id, rollout, pos)
        WHERE s.signal = 'rkl' AND s.teacher = 'strong' AND s.edge IS NOT NULL""").fetchall()
    stored = dict(((r[0], r[1]), (r[2], r[3])) for r in db.execute(
        "SELECT proxy, target, spearman, n FROM summary_proxy WHERE teacher = 'strong'"
    ).fetchall())
    for proxy, i in (("sampled_rank", 0), ("student_entropy", 1)):  # ranks have many ties
        rho, n = stored[(proxy, "edge")]
        assert n == len(rows)
        assert rho == pytest.approx(_plain_spearman([r[i] for r in rows], [r[2] for r in rows]))
    assert stored[("kl_pq", "edge")][0] is not None
    assert db.execute("""SELECT count(*) FROM summary_proxy WHERE teacher = 'ctrl_sharpened'
        AND target = 'edge' AND spearman IS NOT NULL""").fetchone()[0] == 0  # edge 0 everywhere
    assert spearman(np.ones(3), np.arange(3.0)) is None


# ---------------------------------------------------------------------------------------------
# Oracle gain on a hand-built table whose answer is known


def _hand_built() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    schema.create_tables(con)
    con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])
    con.execute("""INSERT INTO teachers (teacher, is_control) VALUES
        ('A', false), ('B', false), ('ctrl_sharpened', true)""")
    con.execute("""INSERT INTO rollouts (question_id, rollout, correct, n_tokens) VALUES
        ('q1', 0, true, 10), ('q2', 0, false, 10)""")
    # decisive nodes in q1: A -> (pos 1 not decisive: skipped, it breaks nothing) -> B, a switch;
    # then a tie (no confident leader: no pair). q2: A -> tie -> B: the decisive node between
    # breaks the pair, so A -> B there is no switch
    con.execute("""INSERT INTO nodes (question_id, rollout, pos, decisive, best_teacher,
                                      best_prob) VALUES
        ('q1', 0, 0, true, 'A', 0.95), ('q1', 0, 1, false, NULL, 0.99),
        ('q1', 0, 2, true, 'B', 0.95), ('q1', 0, 3, true, NULL, 0.5),
        ('q2', 0, 0, true, 'A', 0.99), ('q2', 0, 1, true, NULL, NULL),
        ('q2', 0, 2, true, 'B', 0.95)""")
    # (node, teacher, half a, half b): same numbers in both units
    values = [
        ("q1", 0, "A", 0.9, 0.1), ("q1", 0, "B", 0.2, 0.5),  # a picks A -> 0.1; b picks B -> 0.2
        ("q1", 2, "A", 0.1, 0.3), ("q1", 2, "B", 0.6, 0.7),  # a picks B -> 0.7; b picks B -> 0.6
        ("q2", 0, "A", 0.5, 0.5), ("q2", 0, "B", 0.5, 0.4),  # tie on a -> A -> 0.5; b -> A 0.5
        ("q1", 3, "A", 0.9, 0.9), ("q1", 3, "B", None, 0.1),  # incomplete: left out
        ("q1", 1, "A", 9.0, 9.0), ("q1", 1, "B", 9.0, 0.0),  # not decisive: left out
        ("q1", 0, "ctrl_sharpened", 9.0, 9.0), ("q1", 2, "ctrl_sharpened", 9.0, 9.0),
        ("q2", 0, "ctrl_sharpened", 9.0, 9.0),  # controls never chosen
    ]
    con.executemany("""INSERT INTO node_teacher (question_id, rollout, pos, teacher, advantage,
        advantage_a, advantage_b, edge_a, edge_b) VALUES (?, 0, ?, ?, 0, ?, ?, ?, ?)""",
                    [(q, pos, t, a, b, a, b) for q, pos, t, a, b in values])
    return con


def test_oracle_gain_on_a_hand_built_table() -> None:
    con = _hand_built()
    materialise_summaries(con, draws=50)
    cols = schema.SUMMARY_TABLES[2].column_names
    rows = {r[0]: dict(zip(cols, r, strict=True))
            for r in con.execute("SELECT * FROM summary_oracle").fetchall()}
    assert set(rows) == {"edge", "advantage"}
    oracle = (0.15 + 0.65 + 0.5) / 3
    single = ((0.1 + 0.3 + 0.5) / 3 + (0.2 + 0.6 + 0.5) / 3) / 2  # A on a->b, B on b->a
    for row in rows.values():
        assert row["n"] == 3
        assert row["oracle_mean"] == pytest.approx(oracle)
        assert row["best_single"] == "A|B"
        assert row["best_single_mean"] == pytest.approx(single)
        assert row["oracle_gain"] == pytest.approx(oracle - single)
        assert row["lo"] <= row["hi"]
        assert (row["switch_rate"], row["n_pairs"]) == (1.0, 1)


def _oracle_db(half_a: np.ndarray, half_b: np.ndarray) -> duckdb.DuckDBPyConnection:
    """A run with only what the oracle reads: nodes x teachers half-scores in both units."""
    con = duckdb.connect(":memory:")
    schema.create_tables(con)
    con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])
    names = [f"t{i}" for i in range(half_a.shape[1])]
    con.executemany("INSERT INTO teachers (teacher, is_control) VALUES (?, false)",
                    [(t,) for t in names])
    nodes = half_a.shape[0]
    con.execute("INSERT INTO rollouts (question_id, rollout, correct, n_tokens) "
                "SELECT 'q' || (i % 40), 0, true, 1000 FROM range(40) r(i)")
    con.execute("INSERT INTO nodes (question_id, rollout, pos, decisive) "
                "SELECT 'q' || (i % 40), 0, i, true FROM range(?) r(i)", [nodes])
    import pyarrow as pa

    batch = pa.table({
        "question_id": [f"q{i % 40}" for i in range(nodes) for _ in names],
        "pos": [i for i in range(nodes) for _ in names],
        "teacher": names * nodes,
        "a": half_a.ravel(), "b": half_b.ravel()})
    con.register("halves", batch)
    con.execute("""INSERT INTO node_teacher (question_id, rollout, pos, teacher, advantage,
        advantage_a, advantage_b, edge_a, edge_b)
        SELECT question_id, 0, pos, teacher, 0, a, b, a, b FROM halves""")
    return con


def test_sql_oracle_removes_selection_bias() -> None:
    """The oracle the engine runs (SQL, at merge): teachers that are pure noise look like a big
    per-node gain when chosen and scored on the same half; cross-fitting shows none, while a
    real per-node best keeps its gain."""
    rng = np.random.default_rng(8)
    nodes, teachers = 4000, 3
    a, b = rng.normal(size=(2, nodes, teachers))
    naive = a.max(-1).mean() - a.mean(0).max()
    con = _oracle_db(a, b)
    materialise_summaries(con, draws=20)
    gain, lo, hi = con.execute(
        "SELECT oracle_gain, lo, hi FROM summary_oracle WHERE unit = 'edge'").fetchone()
    assert naive > 0.5 and abs(gain) < 0.05 and lo < 0.05
    signal = rng.normal(size=(nodes, teachers))  # a real per-node best, seen by both halves
    con = _oracle_db(signal + 0.1 * a, signal + 0.1 * b)
    materialise_summaries(con, draws=20)
    gain, lo = con.execute(
        "SELECT oracle_gain, lo FROM summary_oracle WHERE unit = 'advantage'").fetchone()
    assert gain > 0.5 and lo > 0.4


def test_oracle_matches_a_plain_loop_on_the_fixture(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute("""SELECT question_id, rollout, pos, teacher, edge_a, edge_b
        FROM node_teacher JOIN teachers USING (teacher) JOIN nodes USING (question_id, rollout, pos)
        WHERE NOT is_control AND decisive""").fetchall()
    nodes: dict[tuple, dict[str, tuple]] = defaultdict(dict)
    for q, r, pos, t, a, b in rows:
        nodes[(q, r, pos)][t] = (a, b)
    teachers = sorted({r[3] for r in rows})
    complete = [v for v in nodes.values()
                if len(v) == len(teachers) and all(None not in ab for ab in v.values())]
    per_node = []
    for v in complete:
        on_a = max(teachers, key=lambda t: (v[t][0], -teachers.index(t)))
        on_b = max(teachers, key=lambda t: (v[t][1], -teachers.index(t)))
        per_node.append((v[on_a][1] + v[on_b][0]) / 2)
    mean_a = {t: sum(v[t][0] for v in complete) / len(complete) for t in teachers}
    mean_b = {t: sum(v[t][1] for v in complete) / len(complete) for t in teachers}
    pick_a, pick_b = max(teachers, key=mean_a.get), max(teachers, key=mean_b.get)
    single = (mean_b[pick_a] + mean_a[pick_b]) / 2
    n, oracle, best_single, got_single, gain = db.execute("""SELECT n, oracle_mean,
        best_single, best_single_mean, oracle_gain FROM summary_oracle
        WHERE unit = 'edge'""").fetchone()
    assert n == len(complete) > 0
    assert oracle == pytest.approx(sum(per_node) / len(per_node))
    assert got_single == pytest.approx(single)
    assert gain == pytest.approx(oracle - single)
    assert best_single == (pick_a if pick_a == pick_b else f"{pick_a}|{pick_b}")


def test_question_teacher_summary_matches_a_plain_loop(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute("""SELECT s.question_id, s.teacher, s.signal, s.cos, s.edge, s.label_edge,
                                n.decisive
                         FROM scores s JOIN nodes n USING (question_id, rollout, pos)""").fetchall()
    groups: dict[tuple, list] = defaultdict(list)
    for q, t, s, cos, edge, label, decisive in rows:
        groups[(q, t, s)].append((cos, edge, label, decisive))
    got = {r[:3]: r[3:] for r in db.execute("SELECT * FROM summary_question_teacher").fetchall()}
    assert set(got) == set(groups)

    def mean(v: list[float]) -> object:
        return pytest.approx(sum(v) / len(v), rel=1e-12) if v else None

    for key, nodes in groups.items():
        n, n_dec, mean_cos, mean_edge, mean_edge_dec, helps, hurts, neutral = got[key]
        assert n == len(nodes) and n_dec == sum(d for *_, d in nodes)
        assert mean_cos == mean([c for c, *_ in nodes if c is not None])
        assert mean_edge == mean([e for _, e, _, _ in nodes if e is not None])
        assert mean_edge_dec == mean([e for _, e, _, d in nodes if e is not None and d])
        labels = [lab for _, _, lab, _ in nodes]
        assert (helps, hurts, neutral) == tuple(labels.count(x) for x in schema.LABELS)


def test_materialised_summaries_are_bit_identical_across_merges(path: Path,
                                                                 tmp_path: Path) -> None:
    """DuckDB's parallel float sums vary with thread scheduling (2-3 different summary_oracle
    results in 30 merges were seen): the summaries run on one thread, whatever the connection's
    setting, which is restored afterwards."""
    copy = tmp_path / "copy.duckdb"
    shutil.copy(path, copy)
    con = duckdb.connect(str(copy))
    con.execute("SET threads = 4")
    seen = set()
    for _ in range(6):
        materialise_summaries(con, draws=50)
        seen.add(tuple(tuple(con.execute(f"SELECT * FROM {t.name} ORDER BY ALL").fetchall())
                       for t in schema.SUMMARY_TABLES))
    assert len(seen) == 1
    assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 4
