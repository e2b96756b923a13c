"""The TUI's Textual-free query layer, checked against independent computations on the tables."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import duckdb
import polars as pl
import pytest
from synthetic_runs import write_fixture_db

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
    meta = dict(cur.execute("SELECT key, value FROM meta").fetchall())
    assert info.rules == json.loads(meta["score_rules"])
    assert info.non_control == ["strong", "weak"]
    assert set(info.teacher_names) - set(info.non_control) == {"ctrl_sharpened", "ctrl_softened"}


def _controls(cur: duckdb.DuckDBPyConnection) -> set[str]:
    return {t for (t,) in cur.execute("SELECT teacher FROM teachers WHERE is_control").fetchall()}


def test_questions_edge_at_decisive_nodes_and_hurts_per_teacher(
        cur: duckdb.DuckDBPyConnection) -> None:
    """Brute force over scores x nodes: each teacher's mean edge over decisive nodes and its own
    count of hurt-labelled nodes (not a sum over teachers, which counts a node once per
    teacher); controls have no hurts column."""
    teachers = Q.run_info(cur).teacher_names
    controls = _controls(cur)
    frame = Q.fetch_questions(cur, Q.questions_query(teachers, "rkl", controls=controls))
    decisive = {(q, r, p) for q, r, p in cur.execute(
        "SELECT question_id, rollout, pos FROM nodes WHERE decisive").fetchall()}
    edges: dict[tuple[str, str], list[float]] = defaultdict(list)
    hurts: dict[tuple[str, str], int] = defaultdict(int)
    for qid, r, pos, teacher, edge, label in cur.execute(
            "SELECT question_id, rollout, pos, teacher, edge, label_edge FROM scores "
            "WHERE signal = 'rkl'").fetchall():
        if (qid, r, pos) in decisive and edge is not None:
            edges[(qid, teacher)].append(edge)
        hurts[(qid, teacher)] += label == "hurts"
    n_decisive: dict[str, int] = defaultdict(int)
    for qid, _r, _p in decisive:
        n_decisive[qid] += 1
    assert frame.height == Q.run_info(cur).counts["questions"]
    assert "hurts" not in frame.columns
    assert not any(Q.hurts_column(t) in frame.columns for t in controls)
    several = False
    for row in frame.iter_rows(named=True):
        qid = row["question_id"]
        assert (row["n_decisive"] or 0) == n_decisive[qid]
        for t in teachers:
            values = edges[(qid, t)]
            expected = sum(values) / len(values) if values else None
            got = row[Q.edge_column(t)]
            assert (got is None and expected is None) or got == pytest.approx(expected)
            if t not in controls:
                assert row[Q.hurts_column(t)] == hurts[(qid, t)], (qid, t)
        several |= sum(hurts[(qid, t)] > 0 for t in teachers if t not in controls) > 1
    assert several  # a per-teacher count differs from the sum over teachers somewhere
    assert frame["idx"].to_list() == sorted(frame["idx"].to_list())


def test_questions_filter_sort_and_errors(cur: duckdb.DuckDBPyConnection) -> None:
    teachers = Q.run_info(cur).teacher_names
    full = Q.fetch_questions(cur, Q.questions_query(teachers, "rkl"))
    some = Q.fetch_questions(cur, Q.questions_query(teachers, "rkl", where="hurts_strong > 1",
                                                    order_by="hurts_strong", descending=True))
    assert some.height == full.filter(pl.col("hurts_strong") > 1).height
    assert some["hurts_strong"].to_list() == sorted(some["hurts_strong"].to_list(), reverse=True)
    with pytest.raises(Q.QueryError, match="no_such_column"):
        Q.fetch_questions(cur, Q.questions_query(teachers, "rkl", where="no_such_column > 1"))
    with pytest.raises(Q.QueryError, match="';'"):
        Q.questions_query(teachers, "rkl", where="1=1; DROP TABLE scores")


def test_layers_match_scores_row_by_row(cur: duckdb.DuckDBPyConnection) -> None:
    qid, rollout = cur.execute("SELECT question_id, rollout FROM nodes LIMIT 1").fetchall()[0]
    layers = Q.layers_query(qid, rollout, "weak", "fkl").run(cur)
    expected = {
        pos: rest for pos, *rest in cur.execute(
            "SELECT pos, edge, label_edge, cos, label FROM scores WHERE question_id = ? AND "
            "rollout = ? AND teacher = 'weak' AND signal = 'fkl'", [qid, rollout]).fetchall()
    }
    node = {pos: rest for pos, *rest in cur.execute(
        "SELECT pos, stakes, decisive FROM nodes WHERE question_id = ? AND rollout = ?",
        [qid, rollout]).fetchall()}
    assert layers.height == len(node)
    for row in layers.iter_rows(named=True):
        edge, label_edge, cos, label = expected[row["pos"]]
        assert (row["label_edge"], row["label"]) == (label_edge, label)
        assert (row["edge"] is None and edge is None) or row["edge"] == pytest.approx(edge)
        assert (row["cos"] is None and cos is None) or row["cos"] == pytest.approx(cos)
        assert [row["stakes"], row["decisive"]] == node[row["pos"]]
    # S of the sampled token: second code path through the candidates table
    sampled = dict(cur.execute("SELECT pos, s_hat FROM candidates WHERE question_id = ? AND "
                               "rollout = ? AND is_sampled", [qid, rollout]).fetchall())
    for pos, s in zip(layers["pos"].to_list(), layers["s_sampled"].to_list(), strict=True):
        assert s == pytest.approx(sampled[pos], abs=1e-9)


def test_edge_is_the_default_layer_on_its_range() -> None:
    assert Q.LAYERS[0].id == "edge" and Q.LAYERS[0].column == "edge"
    assert Q.LAYERS[0].label_column == "label_edge" and Q.LAYERS[0].scale == 2.0
    by_id = {layer.id: layer for layer in Q.LAYERS}
    assert {"align", "beyond", "best", "stakes"} <= set(by_id)
    assert by_id["align"].label_column == "label" and by_id["beyond"].label_column == \
        "label_beyond"


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
    # the node facts the inspector shows, straight from the nodes table
    facts = ("stakes", "stakes_lo", "stakes_hi", "decisive", "n_plausible", "g_residual_share",
             "best_teacher", "best_prob", "best_margin", "best_reason")
    stored = cur.execute(f"SELECT {', '.join(facts)} FROM nodes WHERE question_id = ? AND "
                         "rollout = ? AND pos = ?", [qid, rollout, pos]).fetchall()[0]
    assert tuple(detail.node[k] for k in facts) == stored
    assert detail.candidates["plausible"].sum() == detail.node["n_plausible"]
    assert {"s", "n", "d_residual_share", "edge_lo", "edge_hi", "label_edge"} <= set(
        detail.candidates.columns) | set(detail.scores.columns)


def test_unprobed_token_has_no_candidates(cur: duckdb.DuckDBPyConnection) -> None:
    row = cur.execute("SELECT question_id, rollout, pos FROM tokens WHERE NOT probed LIMIT 1"
                      ).fetchall()[0]
    detail = Q.node_detail(cur, *row, ["strong"])
    assert detail.candidates.is_empty() and detail.node["pos"] == row[2]


def test_histogram_counts_every_edge_at_decisive_nodes(cur: duckdb.DuckDBPyConnection) -> None:
    hist = Q.histograms(Q.histogram_query("rkl").run(cur))
    assert hist
    for teacher, counts in hist.items():
        values = [e for (e,) in cur.execute(
            "SELECT s.edge FROM scores s JOIN nodes n USING (question_id, rollout, pos) "
            "WHERE s.signal = 'rkl' AND s.teacher = ? AND s.edge IS NOT NULL AND n.decisive",
            [teacher]).fetchall()]
        assert sum(counts) == len(values)
        brute = [0] * Q.HIST_BINS
        for v in values:  # edge lies in [-2, 2]
            brute[max(0, min(math.floor((v + 2) / 4 * Q.HIST_BINS), Q.HIST_BINS - 1))] += 1
        assert counts == brute


def test_headline_matches_summary_alignment(cur: duckdb.DuckDBPyConnection) -> None:
    frame = Q.headline_query("rkl").run(cur)
    assert frame.height
    for row in frame.iter_rows(named=True):
        for prefix, nodes, metric in (("edge_dec", "decisive", "edge"),
                                      ("edge_all", "all", "edge"), ("cos_all", "all", "cos"),
                                      ("gain_dec", "decisive", "gain"),
                                      ("advantage_dec", "decisive", "advantage")):
            mean, lo, hi = cur.execute(
                "SELECT mean, lo, hi FROM summary_alignment WHERE teacher = ? AND signal = 'rkl' "
                "AND correctness = ? AND nodes = ? AND metric = ?",
                [row["teacher"], row["correctness"], nodes, metric]).fetchall()[0]
            assert (row[prefix], row[f"{prefix}_lo"], row[f"{prefix}_hi"]) == (mean, lo, hi)
        labelled = cur.execute(
            "SELECT n_labelled, helps, hurts, neutral FROM summary_alignment WHERE teacher = ? "
            "AND signal = 'rkl' AND correctness = ? AND nodes = 'decisive' AND metric = 'edge'",
            [row["teacher"], row["correctness"]]).fetchall()[0]
        assert (row["n_labelled"], row["helps"], row["hurts"], row["neutral"]) == labelled
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


@pytest.mark.parametrize("order_by,descending", [("idx", False), ("hurts_strong", True),
                                                 ("edge_strong", False)])
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
    whole = Q.fetch_questions(cur, Q.questions_query(teachers, "rkl", order_by="hurts_weak"))
    pages = [Q.fetch_questions(cur, Q.questions_query(teachers, "rkl", order_by="hurts_weak",
                                                      limit=3, offset=o)) for o in (0, 3, 6)]
    assert [p.height for p in pages] == [3, 3, 2]
    assert pl.concat(pages)["question_id"].to_list() == whole["question_id"].to_list()
