"""The synthetic run database: well-formed, internally consistent, tricky where the TUI needs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
from run_invariants import violations
from synthetic_runs import EOS, REST, direction, write_fixture_db

from engine.runfile import schema

ROOT = Path(__file__).resolve().parents[1]
LONG_LEN = 300


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("fixtures") / "run.duckdb"
    write_fixture_db(path, questions=8, rollouts=3, min_len=10, max_len=40, long_rollouts=2,
                     long_len=LONG_LEN, draws=20, seed=1)
    con = duckdb.connect(str(path), read_only=True)
    yield con
    con.close()


def test_rows_are_stored_in_key_order(db: duckdb.DuckDBPyConnection) -> None:
    for t in schema.QUESTION_TABLES:
        keys = db.execute(f"SELECT {', '.join(t.key)} FROM {t.name}").fetchall()
        # the synthetic run has no contrastive or generated contexts (tests/tui_tiny_db.py has)
        assert keys or t.name in ("rollout_prompts", "contexts"), t.name
        assert keys == sorted(keys), f"{t.name} is not in key order"
        assert len(set(keys)) == len(keys), f"{t.name} has duplicate keys"


def test_questions_ids_sort_like_idx_and_one_failed(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute("SELECT question_id, idx, status FROM questions ORDER BY idx").fetchall()
    assert [r[0] for r in rows] == sorted(r[0] for r in rows) == [f"q{i:05d}" for i in range(8)]
    failed = [r[0] for r in rows if r[2] == "failed"]
    assert len(failed) == 1
    assert db.execute("SELECT count(*) FROM rollouts WHERE question_id = ?",
                      failed).fetchone()[0] == 0


def test_tricky_tokens_are_present_with_faithful_bytes(db: duckdb.DuckDBPyConnection) -> None:
    texts = {r[0] for r in db.execute("SELECT DISTINCT token_text FROM tokens").fetchall()}
    for tricky in (" ", "\n", "\t", "[bold]", "\x1b[31m", "\x07", "\r", EOS):
        assert tricky in texts, repr(tricky)
    assert any(len(t) == 300 for t in texts)
    rows = db.execute("SELECT token_text, token_bytes FROM tokens").fetchall()
    invalid = [(t, b) for t, b in rows if not _is_utf8(b)]
    assert invalid and all(t == "\ufffd" for t, _ in invalid)
    assert all(b.decode() == t for t, b in rows if _is_utf8(b))


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_rollouts_end_in_eos_iff_finished_and_lengths_match(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute("""
        SELECT r.finished, r.n_tokens, count(*), max(t.pos), arg_max(t.token_text, t.pos),
               arg_max(t.is_special, t.pos),
               any_value(r.completion) = string_agg(t.token_text, '' ORDER BY t.pos)
        FROM rollouts r JOIN tokens t USING (question_id, rollout)
        GROUP BY r.question_id, r.rollout, r.finished, r.n_tokens""").fetchall()
    for finished, n_tokens, count, last_pos, last_text, last_special, same_text in rows:
        assert n_tokens == count == last_pos + 1
        assert (last_text == EOS) == finished == last_special
        assert same_text
    assert sum(1 for r in rows if r[1] == LONG_LEN and not r[0]) == 2


def test_correctness_is_mixed(db: duckdb.DuckDBPyConnection) -> None:
    verdicts = dict(db.execute("SELECT verdict, count(*) FROM rollouts GROUP BY 1").fetchall())
    assert verdicts.get("correct", 0) > 0 and verdicts.get("incorrect", 0) > 0
    bad = db.execute("""SELECT count(*) FROM rollouts WHERE NOT (
        (verdict = 'correct' AND correct) OR (verdict = 'incorrect' AND NOT correct)
        OR (verdict = 'unverifiable' AND correct IS NULL))""").fetchone()[0]
    assert bad == 0


def test_controls_are_included_and_marked(db: duckdb.DuckDBPyConnection) -> None:
    rows = dict(db.execute("SELECT teacher, is_control FROM teachers").fetchall())
    assert rows == {"strong": False, "specialist": False, "self_answer": False,
                    "ctrl_sharpened": True, "ctrl_softened": True}


def test_labels_follow_intervals_and_nulls_have_reasons(db: duckdb.DuckDBPyConnection) -> None:
    """Labels by revision 2's rule, recomputed here: a decisive node and an interval beyond
    +-epsilon; a NULL score has a reason and no label."""
    eps, tau = 0.05, 0.1  # the defaults the fixture records in meta score_rules
    rows = db.execute("""SELECT cos, cos_lo, cos_hi, label, edge, edge_lo, edge_hi, label_edge,
                         beyond, beyond_lo, beyond_hi, label_beyond, s.null_reason, teacher,
                         signal, n.stakes FROM scores s JOIN nodes n
                         USING (question_id, rollout, pos)""").fetchall()
    reasons: dict[str, set] = {}
    for row in rows:
        *triples, reason, teacher, signal, stakes = row
        for i, bound in ((0, 1), (4, 2), (8, 1)):
            x, x_lo, x_hi, lab = triples[i:i + 4]
            if x is None:
                assert lab is None and reason is not None
                continue
            assert -bound <= x_lo <= x <= x_hi <= bound
            decisive = stakes >= tau
            want = "helps" if decisive and x_lo > eps else \
                "hurts" if decisive and x_hi < -eps else "neutral"
            assert lab == want
        if reason is not None:
            reasons.setdefault(reason, set()).add((teacher, signal))
    assert "no_signal" in reasons and "sharpening_dominated" in reasons
    assert reasons["pure_sharpening"] == {("ctrl_sharpened", "rkl")}
    labels = {r[7] for r in rows}
    assert {"helps", "hurts", "neutral", None} <= labels
    n_null = db.execute("""SELECT count(*) FROM scores s JOIN nodes n
        USING (question_id, rollout, pos) WHERE s.cos IS NULL
        AND (n.null_reason IS DISTINCT FROM 'no_signal' OR n.g_norm2 > 0)""").fetchone()[0]
    assert n_null == 0


def test_fixture_obeys_the_run_invariants(db: duckdb.DuckDBPyConnection) -> None:
    """The same invariants as an engine run (tests/run_invariants.py), and revision 2's shape:
    non-decisive nodes with signal exist, the sharpened control has edge 0 everywhere."""
    assert violations(db) == {}
    quiet, decisive, ties, best = db.execute("""SELECT
        count(*) FILTER (NOT decisive AND null_reason IS NULL),
        count(*) FILTER (decisive), count(*) FILTER (best_reason = 'tie'),
        count(best_teacher) FROM nodes""").fetchone()
    assert min(quiet, decisive, ties, best) > 0
    worst = db.execute("""SELECT max(abs(edge)), max(abs(edge_lo)) + max(abs(edge_hi)),
                                 count(label_edge) FILTER (label_edge <> 'neutral')
                          FROM scores WHERE teacher = 'ctrl_sharpened'""").fetchone()
    assert worst == (0.0, 0.0, 0)
    # cos_sharp is the sharpened control's cosine under the same signal
    gap = db.execute("""SELECT max(abs(s.cos_sharp - c.cos)) FROM scores s JOIN scores c
        ON (s.question_id, s.rollout, s.pos, s.signal) = (c.question_id, c.rollout, c.pos,
                                                          c.signal)
        WHERE c.teacher = 'ctrl_sharpened'""").fetchone()[0]
    assert gap == 0.0


def test_node_values_follow_candidates(db: duckdb.DuckDBPyConnection) -> None:
    """V_hat, m_s and value_change from candidate rows; entropy/logp agree with the node."""
    worst = db.execute("""
        WITH c AS (SELECT question_id, rollout, pos, sum(p) AS m_s,
                          sum(p * s_hat) / sum(p) AS v_hat,
                          max(s_hat) FILTER (is_sampled) AS s_sampled,
                          max(ln(p)) FILTER (is_sampled) AS logp, count(*) AS k
                   FROM candidates GROUP BY ALL)
        SELECT max(abs(c.m_s - n.m_s)), max(abs(c.v_hat - n.v_hat)),
               max(abs(c.s_sampled - c.v_hat - n.value_change)), max(abs(c.logp - t.logp)),
               bool_and(c.k = n.n_candidates)
        FROM c JOIN nodes n USING (question_id, rollout, pos)
        JOIN tokens t USING (question_id, rollout, pos)""").fetchone()
    assert max(worst[:4]) < 1e-12 and worst[4]


@pytest.mark.parametrize("signal", ["rkl", "fkl", "jsd", "sampled"])
def test_fixture_directions_are_descent_directions(signal: str) -> None:
    """The fixture's directions (engine.maths, K candidates + REST equal tokens) vs differences."""
    rng = np.random.default_rng(5)
    k = 4
    z = np.concatenate([rng.normal(size=k), np.full(REST, -7.0)])
    zq = z + np.concatenate([rng.normal(size=k), np.full(REST, 0.3)])
    q_full = np.exp(zq - zq.max())
    q_full /= q_full.sum()
    p0 = _softmax(z)

    def loss(zz: np.ndarray) -> float:
        p = _softmax(zz)
        kl = lambda a, b: float((a * np.log(a / b)).sum())  # noqa: E731
        if signal == "rkl":
            return kl(p, q_full)
        if signal == "fkl":
            return kl(q_full, p)
        if signal == "jsd":
            m = 0.5 * (p + q_full)
            return 0.5 * kl(q_full, m) + 0.5 * kl(p, m)
        return -(np.log(q_full[0]) - np.log(p0[0])) * np.log(p[0])

    eps = 1e-6
    numeric = []
    for i in (*range(k), k):  # every candidate and one "other" token
        e = np.zeros_like(z)
        e[i] = eps
        numeric.append(-(loss(z + e) - loss(z - e)) / (2 * eps))
    d, d_other = direction(signal, p0[None, :k], p0[None, k], q_full[None, :k], q_full[None, k])
    np.testing.assert_allclose([*d[0], d_other[0]], numeric, rtol=1e-5, atol=1e-10)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def test_same_seed_same_file_other_seed_differs(tmp_path: Path) -> None:
    def digest(path: Path) -> tuple:
        con = duckdb.connect(str(path), read_only=True)
        row = con.execute("""SELECT (SELECT sum(hash(token_id, pos)) FROM tokens),
                                    (SELECT sum(cos) FROM scores),
                                    (SELECT sum(lo) FROM summary_alignment)""").fetchone()
        con.close()
        return row

    kw = dict(questions=2, rollouts=2, min_len=5, max_len=15, draws=10)
    a = digest(write_fixture_db(tmp_path / "a.duckdb", seed=4, **kw))
    b = digest(write_fixture_db(tmp_path / "b.duckdb", seed=4, **kw))
    c = digest(write_fixture_db(tmp_path / "c.duckdb", seed=5, **kw))
    assert a == b and a != c


def test_write_is_atomic_and_replaces(tmp_path: Path) -> None:
    out = tmp_path / "x.duckdb"
    out.write_text("old")
    write_fixture_db(out, questions=2, rollouts=1, min_len=3, max_len=6, probed_share=0.5,
                     draws=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.duckdb"]
    con = duckdb.connect(str(out), read_only=True)
    schema.check_schema(con)
    probed = con.execute("SELECT count(*) FILTER (probed), count(*) FROM tokens").fetchone()
    assert probed[1] > 0 and probed[0] == con.execute("SELECT count(*) FROM nodes").fetchone()[0]
    con.close()
    with pytest.raises(ValueError, match="candidates must be in 2..40"):
        write_fixture_db(tmp_path / "y.duckdb", candidates=1)
    assert not (tmp_path / "y.duckdb").exists()


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
"""`python -m synthetic_runs` runs from tests/, where it lives, with the repo on the path."""


def test_cli_writes_a_file_and_reports_mistakes_without_traceback(tmp_path: Path) -> None:
    out = tmp_path / "cli.duckdb"
    ok = subprocess.run([sys.executable, "-m", "synthetic_runs", str(out), "--questions", "2",
                         "--rollouts", "2", "--max-len", "25", "--draws", "10"],
                        cwd=ROOT / "tests", env=ENV, capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout and out.exists()
    bad = subprocess.run([sys.executable, "-m", "synthetic_runs", str(out), "--signals",
                          "rkl,kl"], cwd=ROOT / "tests", env=ENV, capture_output=True, text=True,
                        timeout=120)
    assert bad.returncode == 2
    assert "signals must be a non-empty subset of rkl, fkl, jsd, sampled" in bad.stderr
    assert "Traceback" not in bad.stderr
