"""The TUI's Textual-free query layer, checked against independent computations on the tables."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import duckdb
import polars as pl
import pytest

from engine.fixtures import write_fixture_db
from opd_tui import queries as Q


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tui") / "run.duckdb"
    return write_fixture_db(path, questions=8, rollouts=2, min_len=10, max_len=40,
                            teachers=("strong", "weak"), signals=("rkl", "fkl"), seed=3,
                            probed_share=0.5)


@pytest.fixture(scope="module")
def run(db: Path) -> Q.Run:
    return Q.Run(db)


@pytest.fixture
def cur(run: Q.Run) -> duckdb.DuckDBPyConnection:
    return run.cursor()


def test_run_info_counts_match_tables(cur: duckdb.DuckDBPyConnection) -> None:
    info = Q.run_info(cur)
    for table in ("questions", "rollouts", "tokens", "nodes"):
        assert info.counts[table] == cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    correct = [r[0] for r in cur.execute("SELECT correct FROM rollouts").fetchall()]
    known = [c for c in correct if c is not None]
    assert info.accuracy == pytest.approx(sum(known) / len(known))
    assert info.signals == ["rkl", "fkl"]
    assert info.non_control == ["strong", "weak"]
    assert set(info.teacher_names) - set(info.non_control) == {"ctrl_sharpened", "ctrl_softened"}


def test_questions_alignment_and_hurts_by_brute_force(cur: duckdb.DuckDBPyConnection) -> None:
    teachers = Q.run_info(cur).teacher_names
    frame = Q.fetch_questions(cur, Q.questions_query(teachers, "rkl"))
    controls = {t for (t,) in cur.execute("SELECT teacher FROM teachers WHERE is_control")
                .fetchall()}
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    hurts: dict[str, int] = defaultdict(int)
    for qid, teacher, cos, label in cur.execute(
            "SELECT question_id, teacher, cos, label FROM scores WHERE signal = 'rkl'").fetchall():
        if cos is not None:
            sums[(qid, teacher)].append(cos)
        if label == "hurts" and teacher not in controls:
            hurts[qid] += 1
    assert frame.height == Q.run_info(cur).counts["questions"]
    for row in frame.iter_rows(named=True):
        assert row["hurts"] == hurts[row["question_id"]]
        for t in teachers:
            values = sums[(row["question_id"], t)]
            expected = sum(values) / len(values) if values else None
            got = row[Q.align_column(t)]
            assert (got is None and expected is None) or got == pytest.approx(expected)
    assert frame["idx"].to_list() == sorted(frame["idx"].to_list())


def test_questions_filter_sort_and_errors(cur: duckdb.DuckDBPyConnection) -> None:
    teachers = Q.run_info(cur).teacher_names
    full = Q.fetch_questions(cur, Q.questions_query(teachers, "rkl"))
    some = Q.fetch_questions(cur, Q.questions_query(teachers, "rkl", where="hurts > 3",
                                                    order_by="hurts", descending=True))
    assert some.height == full.filter(pl.col("hurts") > 3).height
    assert some["hurts"].to_list() == sorted(some["hurts"].to_list(), reverse=True)
    with pytest.raises(Q.QueryError, match="no_such_column"):
        Q.fetch_questions(cur, Q.questions_query(teachers, "rkl", where="no_such_column > 1"))
    with pytest.raises(Q.QueryError, match="';'"):
        Q.questions_query(teachers, "rkl", where="1=1; DROP TABLE scores")


def test_layers_match_scores_row_by_row(cur: duckdb.DuckDBPyConnection) -> None:
    qid, rollout = cur.execute("SELECT question_id, rollout FROM nodes LIMIT 1").fetchall()[0]
    layers = Q.layers_query(qid, rollout, "weak", "fkl").run(cur)
    expected = {
        pos: (cos, label) for pos, cos, label in cur.execute(
            "SELECT pos, cos, label FROM scores WHERE question_id = ? AND rollout = ? "
            "AND teacher = 'weak' AND signal = 'fkl'", [qid, rollout]).fetchall()
    }
    assert layers.height == cur.execute("SELECT count(*) FROM nodes WHERE question_id = ? AND "
                                        "rollout = ?", [qid, rollout]).fetchall()[0][0]
    for row in layers.iter_rows(named=True):
        cos, label = expected[row["pos"]]
        assert row["label"] == label
        assert (row["cos"] is None and cos is None) or row["cos"] == pytest.approx(cos)
    # S of the sampled token: second code path through the candidates table
    sampled = dict(cur.execute("SELECT pos, s_hat FROM candidates WHERE question_id = ? AND "
                               "rollout = ? AND is_sampled", [qid, rollout]).fetchall())
    for pos, s in zip(layers["pos"].to_list(), layers["s_sampled"].to_list(), strict=True):
        assert s == pytest.approx(sampled[pos], abs=1e-9)


def test_node_detail_pivots_teacher_q(cur: duckdb.DuckDBPyConnection) -> None:
    qid, rollout, pos = cur.execute("SELECT question_id, rollout, pos FROM nodes "
                                    "ORDER BY ALL LIMIT 1 OFFSET 3").fetchall()[0]
    teachers = Q.run_info(cur).teacher_names
    detail = Q.node_detail(cur, qid, rollout, pos, teachers)
    q = {(c, t): v for c, t, v in cur.execute(
        "SELECT cand, teacher, q FROM candidate_teacher WHERE question_id = ? AND rollout = ? "
        "AND pos = ?", [qid, rollout, pos]).fetchall()}
    assert detail.candidates.height == detail.node["n_candidates"]
    for row in detail.candidates.iter_rows(named=True):
        for t in teachers:
            assert row[f"q_{t}"] == pytest.approx(q[(row["cand"], t)])
    assert detail.candidates["p"].to_list() == sorted(detail.candidates["p"].to_list(),
                                                       reverse=True)
    assert detail.scores.height == len(teachers) * 2
    assert detail.scores["is_control"].to_list() == sorted(detail.scores["is_control"].to_list())
    # ideal direction: g_a = p_a (S_a - V_hat), recomputed from the stored p and s_hat
    for row in detail.candidates.iter_rows(named=True):
        assert row["g"] == pytest.approx(row["p"] * (row["s_hat"] - detail.node["v_hat"]),
                                         abs=1e-9)


def test_unprobed_token_has_no_candidates(cur: duckdb.DuckDBPyConnection) -> None:
    row = cur.execute("SELECT question_id, rollout, pos FROM tokens WHERE NOT probed LIMIT 1"
                      ).fetchall()[0]
    detail = Q.node_detail(cur, *row, ["strong"])
    assert detail.candidates.is_empty() and detail.node["pos"] == row[2]


def test_histogram_counts_every_non_null_cosine(cur: duckdb.DuckDBPyConnection) -> None:
    hist = Q.histograms(Q.histogram_query("rkl").run(cur))
    for teacher, counts in hist.items():
        values = [c for (c,) in cur.execute(
            "SELECT cos FROM scores WHERE signal = 'rkl' AND teacher = ? AND cos IS NOT NULL",
            [teacher]).fetchall()]
        assert sum(counts) == len(values)
        brute = [0] * Q.HIST_BINS
        for v in values:
            brute[min(math.floor((v + 1) / 2 * Q.HIST_BINS), Q.HIST_BINS - 1)] += 1
        assert counts == brute


def test_headline_matches_summary_alignment(cur: duckdb.DuckDBPyConnection) -> None:
    frame = Q.headline_query("rkl").run(cur)
    for row in frame.iter_rows(named=True):
        mean, lo, hi = cur.execute(
            "SELECT mean, lo, hi FROM summary_alignment WHERE teacher = ? AND signal = 'rkl' "
            "AND correctness = ? AND metric = 'beyond'", [row["teacher"], row["correctness"]]
        ).fetchall()[0]
        assert (row["beyond"], row["beyond_lo"], row["beyond_hi"]) == (mean, lo, hi)
    assert frame["is_control"].to_list() == sorted(frame["is_control"].to_list())


def test_inline_sql_gives_the_same_result(cur: duckdb.DuckDBPyConnection) -> None:
    """The SQL shown to the user ("show the SQL behind this view") runs as pasted."""
    qid = cur.execute("SELECT question_id FROM nodes LIMIT 1").fetchall()[0][0]
    query = Q.candidates_query(qid, 0, 0, ["strong", "weak"])
    pasted = pl.from_arrow(cur.sql(query.inline().rstrip(";")).to_arrow_table())
    assert pasted.equals(query.run(cur))
    assert "'it''s'" in Q.Query("SELECT ?", ("it's",)).inline()


def test_open_errors_are_one_clear_message(tmp_path: Path) -> None:
    with pytest.raises(Q.OpenError, match="no such file"):
        Q.Run(tmp_path / "missing.duckdb")
    junk = tmp_path / "junk.duckdb"
    junk.write_text("not a database")
    with pytest.raises(Q.OpenError, match="cannot be opened as a run database"):
        Q.Run(junk)
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE x (a INT)").close()
    with pytest.raises(Q.OpenError, match="table 'meta' is missing"):
        Q.Run(other)


def test_opens_read_only_and_never_writes(db: Path) -> None:
    before = db.stat().st_mtime_ns, db.read_bytes()[:4096]
    run = Q.Run(db)
    with pytest.raises(duckdb.Error, match="read-only"):
        run.cursor().execute("CREATE TABLE hack (a INT)")
    run.close()
    assert (db.stat().st_mtime_ns, db.read_bytes()[:4096]) == before


@pytest.mark.parametrize("order_by,descending", [("idx", False), ("hurts", True),
                                                 ("align_strong", False)])
def test_question_summary_gives_what_scanning_scores_gives(
        cur: duckdb.DuckDBPyConnection, order_by: str, descending: bool) -> None:
    """summary_question_teacher and a scan of `scores` are two code paths to the same rows."""
    teachers = Q.run_info(cur).teacher_names
    frames = [Q.fetch_questions(cur, Q.questions_query(teachers, "fkl", order_by=order_by,
                                                       descending=descending, summary=s))
              for s in (True, False)]
    assert frames[0].height == 8
    assert frames[0]["question_id"].to_list() == frames[1]["question_id"].to_list()
    for col in frames[0].columns:
        a, b = frames[0][col].to_list(), frames[1][col].to_list()
        if frames[0][col].dtype.is_float():
            assert a == pytest.approx(b, rel=1e-12, nan_ok=True), col
        else:
            assert a == b, col


def test_question_pages_concatenate_to_the_whole_list(cur: duckdb.DuckDBPyConnection) -> None:
    teachers = Q.run_info(cur).teacher_names
    whole = Q.fetch_questions(cur, Q.questions_query(teachers, "rkl", order_by="hurts"))
    pages = [Q.fetch_questions(cur, Q.questions_query(teachers, "rkl", order_by="hurts",
                                                      limit=3, offset=o)) for o in (0, 3, 6)]
    assert [p.height for p in pages] == [3, 3, 2]
    assert pl.concat(pages)["question_id"].to_list() == whole["question_id"].to_list()
