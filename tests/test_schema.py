"""The file contract: docs cover the schema, fixtures meet it, documented SQL recomputes scores."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from synthetic_runs import write_fixture_db

from engine.runfile import schema

DOC = Path(__file__).resolve().parents[1] / "docs" / "schema.md"


def _doc_sections() -> dict[str, str]:
    """Section body per `### \\`name\\`` heading."""
    parts = re.split(r"^### `([a-z_]+)`\s*$", DOC.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _recompute_sql() -> dict[str, str]:
    return {name: sql for sql, name in re.findall(
        r"```sql\n(-- recompute: (\w+)\n.*?)```", DOC.read_text(), flags=re.S)}


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "fixture.duckdb"
    return write_fixture_db(path, questions=5, rollouts=3, min_len=10, max_len=40, draws=30,
                            seed=3)


def test_every_table_column_and_view_is_documented() -> None:
    sections = _doc_sections()
    missing = []
    for t in schema.TABLES + schema.SUMMARY_TABLES:
        body = sections.get(t.name)
        if body is None:
            missing.append(t.name)
            continue
        rows = set(re.findall(r"^\| `([a-z_0-9]+)` \|", body, flags=re.M))
        missing += [f"{t.name}.{c}" for c in t.column_names if c not in rows]
    missing += [f"view {v}" for v in schema.VIEWS if v not in sections]
    assert not missing, f"undocumented in docs/schema.md: {missing}"


def test_fixture_passes_schema_check_and_every_view_has_rows(fixture_db: Path) -> None:
    con = duckdb.connect(str(fixture_db), read_only=True)
    schema.check_schema(con)
    for view in schema.VIEWS:
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone()[0] > 0, view
    for t in schema.SUMMARY_TABLES:
        assert con.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0] > 0, t.name


def test_open_run_is_read_only_for_file_and_run_directory(fixture_db: Path,
                                                          tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(fixture_db, run_dir / schema.RUN_DB_NAME)
    for target in (fixture_db, run_dir):
        con = schema.open_run(target)
        n_tokens = con.execute("SELECT count(*) FROM tokens").fetchone()[0]
        assert n_tokens > 0
        assert schema.read_meta(con)["schema_version"] == str(schema.SCHEMA_VERSION)
        for write in ("INSERT INTO meta VALUES ('x', 'y')", "DELETE FROM tokens",
                      "CREATE TABLE scratch (x INTEGER)"):
            with pytest.raises(duckdb.Error, match="read-only"):
                con.execute(write)
        assert con.execute("SELECT count(*) FROM tokens").fetchone()[0] == n_tokens
        con.close()


# ---------------------------------------------------------------------------------------------
# Documented recomputation SQL on a database whose components come from full-vocabulary numpy


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _numeric_direction(loss, z: np.ndarray) -> np.ndarray:
    """d = -dD/dz by central differences: independent of every closed form in the engine."""
    eps = 1e-6
    grad = np.empty_like(z)
    for i in range(z.size):
        e = np.zeros_like(z)
        e[i] = eps
        grad[i] = (loss(z + e) - loss(z - e)) / (2 * eps)
    return -grad


def _losses(q: np.ndarray, y: int, p0: np.ndarray) -> dict:
    def kl(a: np.ndarray, b: np.ndarray) -> float:
        return float((a * (np.log(a) - np.log(b))).sum())

    def jsd(z: np.ndarray) -> float:
        p = _softmax(z)
        m = 0.5 * q + 0.5 * p
        return 0.5 * kl(q, m) + 0.5 * kl(p, m)

    adv = np.log(q[y]) - np.log(p0[y])  # held constant: the ratio is not differentiated
    return {
        "rkl": lambda z: kl(_softmax(z), q),
        "fkl": lambda z: kl(q, _softmax(z)),
        "jsd": jsd,
        "sampled": lambda z: -adv * np.log(_softmax(z)[y]),
    }


def _consistent_db(rng: np.random.Generator, n_nodes: int = 3, vocab: int = 9):
    """Tables filled from true full-vocabulary vectors, plus the expected scores."""
    con = duckdb.connect(":memory:")
    schema.create_tables(con)
    con.execute("INSERT INTO meta VALUES ('sampling_temperature', '1.0')")
    expected = {}
    cand_rows, ct_rows, node_rows, score_rows = [], [], [], []
    for pos in range(n_nodes):
        z = rng.normal(size=vocab)
        p = _softmax(z)
        cand = [int(np.argmax(p)), *rng.choice(vocab, 3, replace=False).tolist()]
        cand = list(dict.fromkeys(cand))  # de-duplicated, sampled token first
        y = cand[0]
        s_hat = rng.integers(0, 9, len(cand)) / 8
        s_hat[0], s_hat[1] = 0.25, 0.75  # never all equal: g != 0
        m_s = p[cand].sum()
        v_hat = float((p[cand] * s_hat).sum() / m_s)
        g = np.zeros(vocab)
        g[cand] = p[cand] * (s_hat - v_hat)
        entropy = -(p * np.log(p)).sum()
        h = p * (np.log(p) + entropy)
        proj = np.eye(vocab) - np.outer(h, h) / (h @ h)
        node_rows.append(("q0", 0, pos, v_hat, m_s, float(g @ g), float(h @ h), float(g @ h)))
        for ci, a in enumerate(cand):
            cand_rows.append(("q0", 0, pos, ci, a, bool(ci == 0), float(p[a]), float(s_hat[ci]),
                              float(g[a]), float(h[a])))
        for teacher in ("t1", "t2"):
            q = _softmax(z + rng.normal(scale=1.5, size=vocab))
            d = {sig: _numeric_direction(f, z) for sig, f in _losses(q, y, p).items()}
            for ci, a in enumerate(cand):
                ct_rows.append(("q0", 0, pos, ci, teacher, float(q[a]),
                                *(float(d[sig][a]) for sig in ("rkl", "fkl", "jsd", "sampled"))))
            expected[(pos, teacher, "advantage")] = float((q[cand] * (s_hat - v_hat)).sum())
            for sig, dv in d.items():
                pg, pd = proj @ g, proj @ dv
                expected[(pos, teacher, sig)] = {
                    "cos": g @ dv / np.linalg.norm(g) / np.linalg.norm(dv),
                    "cos_c": g[cand] @ dv[cand] / np.linalg.norm(g[cand])
                    / np.linalg.norm(dv[cand]),
                    "beyond": pg @ pd / np.linalg.norm(pg) / np.linalg.norm(pd),
                    "gain": g @ dv,
                }
                score_rows.append(("q0", 0, pos, teacher, sig, float(dv @ dv), float(h @ dv),
                                   float(g @ dv)))
    con.executemany("INSERT INTO nodes (question_id, rollout, pos, v_hat, m_s, g_norm2, h_norm2,"
                    " gh) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", node_rows)
    con.executemany("INSERT INTO candidates (question_id, rollout, pos, cand, token_id,"
                    " is_sampled, p, s_hat, g, h) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    cand_rows)
    con.executemany("INSERT INTO candidate_teacher (question_id, rollout, pos, cand, teacher, q,"
                    " d_rkl, d_fkl, d_jsd, d_sampled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    ct_rows)
    con.executemany("INSERT INTO scores (question_id, rollout, pos, teacher, signal, d_norm2, hd,"
                    " gain) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", score_rows)
    return con, expected


def test_documented_sql_recomputes_scores_from_full_vocabulary_components() -> None:
    con, expected = _consistent_db(np.random.default_rng(7))
    sql = _recompute_sql()
    assert set(sql) == {"g_from_candidates", "scores_from_candidates", "scores_from_norms",
                        "edge_from_scores", "stakes_from_candidates", "advantage_from_candidates"}
    stored_g = dict(((r[0], r[1]), r[2]) for r in con.execute(
        "SELECT pos, cand, g FROM candidates").fetchall())
    v_hat = dict(con.execute("SELECT pos, v_hat FROM nodes").fetchall())
    for _, _, pos, cand, v, g in con.execute(sql["g_from_candidates"]).fetchall():
        assert v == pytest.approx(v_hat[pos], abs=1e-12)
        assert g == pytest.approx(stored_g[(pos, cand)], abs=1e-12)
    node = {r[0]: r[1:] for r in con.execute("SELECT pos, g_norm2, gh FROM nodes").fetchall()}
    rows = con.execute(sql["scores_from_candidates"]).fetchall()
    assert len(rows) == 3 * 2 * 4
    for _, _, pos, teacher, sig, gain, cos_c, g_norm2, gh in rows:
        want = expected[(pos, teacher, sig)]
        assert gain == pytest.approx(want["gain"], rel=1e-6, abs=1e-12)
        assert cos_c == pytest.approx(want["cos_c"], abs=1e-6)
        assert (g_norm2, gh) == pytest.approx(node[pos], rel=1e-9)
    rows = con.execute(sql["scores_from_norms"]).fetchall()
    assert len(rows) == 3 * 2 * 4
    for _, _, pos, teacher, sig, cos, beyond, _, _ in rows:
        assert cos == pytest.approx(expected[(pos, teacher, sig)]["cos"], abs=1e-6)
        assert beyond == pytest.approx(expected[(pos, teacher, sig)]["beyond"], abs=1e-6)
    for _, _, pos, teacher, advantage, _ in con.execute(
            sql["advantage_from_candidates"]).fetchall():
        assert advantage == pytest.approx(expected[(pos, teacher, "advantage")], abs=1e-12)


def test_documented_sql_reproduces_the_fixture_scores(fixture_db: Path) -> None:
    con = duckdb.connect(str(fixture_db), read_only=True)
    sql = _recompute_sql()
    worst = con.execute(f"""
        SELECT max(abs(r.cos - s.cos)), max(abs(r.beyond - s.beyond)), count(s.beyond)
        FROM ({sql['scores_from_norms']}) r JOIN scores s
        USING (question_id, rollout, pos, teacher, signal)""").fetchone()
    assert worst[0] < 1e-9 and worst[1] < 1e-6 and worst[2] > 0
    worst = con.execute(f"""
        SELECT max(abs(r.gain - s.gain)), max(abs(r.cos_c - s.cos_c)), count(*)
        FROM ({sql['scores_from_candidates']}) r JOIN scores s
        USING (question_id, rollout, pos, teacher, signal)""").fetchone()
    assert worst[0] < 1e-12 and worst[1] < 1e-9 and worst[2] > 0
    worst = con.execute(f"""
        SELECT max(abs(r.advantage - n.advantage)), max(abs(r.m_c - n.m_c))
        FROM ({sql['advantage_from_candidates']}) r JOIN node_teacher n
        USING (question_id, rollout, pos, teacher)""").fetchone()
    assert max(worst) < 1e-12


def test_sql_quoting_round_trips_any_text() -> None:
    """One quoting helper pair for every reader: paths and user-typed column names with quotes,
    unicode and newlines come back unchanged."""
    from engine.runfile.sql import sql_ident, sql_literal

    con = duckdb.connect()
    for text in ("plain", "it's", 'say "hi"', "a''b", "tab\tnew\nline", "好 🙂", ""):
        assert con.execute(f"SELECT {sql_literal(text)}").fetchall() == [(text,)]
        if text:
            rel = con.execute(f"SELECT 1 AS {sql_ident(text)}")
            assert [d[0] for d in rel.description] == [text]
            rel.fetchall()
    con.close()


def test_a_live_run_directory_is_one_without_its_run_file(tmp_path: Path) -> None:
    assert schema.is_live_run_dir(tmp_path)
    (tmp_path / schema.RUN_DB_NAME).write_bytes(b"")
    assert not schema.is_live_run_dir(tmp_path)
    assert not schema.is_live_run_dir(tmp_path / schema.RUN_DB_NAME)  # a file
    assert not schema.is_live_run_dir(tmp_path / "missing")
