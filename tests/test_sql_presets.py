"""Every preset runs on a v3 fixture run; the token rankings are recomputed independently in
Python, and none ranks by a cosine (effect size is the gain or the teacher advantage)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest
from synthetic_runs import write_fixture_db

from opd_tui.sql import PRESETS, open_sandbox, start_query


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("presets") / "run.duckdb"
    return write_fixture_db(path, questions=6, rollouts=2, min_len=10, max_len=30, candidates=3,
                            seed=1)


@pytest.fixture(scope="module")
def sandbox(fixture_db: Path, tmp_path_factory: pytest.TempPathFactory):
    sb = open_sandbox(fixture_db, export_dir=tmp_path_factory.mktemp("exports"))
    yield sb
    sb.close()


@pytest.fixture(scope="module")
def raw(fixture_db: Path):
    con = duckdb.connect(str(fixture_db), read_only=True)
    yield con
    con.close()


def _rows(sandbox, sql: str) -> list[dict]:
    stream = start_query(sandbox, sql, row_limit=10**6)
    out: list[dict] = []
    while (batch := stream.next_batch()) is not None:
        out.extend(batch.to_pylist())
    return out


def _sql(pid: str) -> str:
    return next(p.sql for p in PRESETS if p.id == pid)


@pytest.mark.parametrize("preset", PRESETS, ids=[p.id for p in PRESETS])
def test_every_preset_runs_and_returns_rows(sandbox, preset) -> None:
    rows = _rows(sandbox, preset.sql)
    assert rows, f"preset {preset.id} returned no rows on the fixture"


def test_token_presets_carry_the_jump_key(sandbox) -> None:
    for pid in ("most_hurt", "most_hurt_advantage", "hurts_while_helps"):
        assert {"question_id", "rollout", "pos"} <= set(_rows(sandbox, _sql(pid))[0])


def test_no_preset_ranks_by_a_cosine() -> None:
    """Every ORDER BY (final, window, QUALIFY) orders by something other than cos / cos_c /
    beyond: a cosine's magnitude says nothing about how much success moves."""
    for preset in PRESETS:
        for clause in re.findall(r"ORDER BY ([^)\n]*)", preset.sql, flags=re.IGNORECASE):
            assert not re.search(r"(?<![\w])(?:\w+\.)?(?:cos|cos_c|beyond)\b", clause), \
                (preset.id, clause)


def _decisive_teacher_rows(raw: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    """(teacher, question_id, rollout, pos, value) at decisive nodes for non-control teachers,
    joined by hand in Python (no shared SQL with the presets)."""
    decisive = {(q, r, p) for q, r, p in raw.execute(
        "SELECT question_id, rollout, pos FROM nodes WHERE decisive").fetchall()}
    controls = {t for (t,) in raw.execute(
        "SELECT teacher FROM teachers WHERE is_control").fetchall()}
    return [(t, q, r, p, v) for t, q, r, p, v in raw.execute(sql).fetchall()
            if (q, r, p) in decisive and t not in controls]


def _top20(rows: list[tuple]) -> list[tuple]:
    per_teacher: dict[str, list[tuple]] = defaultdict(list)
    for teacher, q, r, pos, value in rows:
        if value is not None and value < 0:
            per_teacher[teacher].append((value, q, r, pos))
    return [(teacher, q, r, pos) for teacher in sorted(per_teacher)
            for _value, q, r, pos in sorted(per_teacher[teacher])[:20]]


def test_most_hurt_ranks_decisive_tokens_by_gain(sandbox, raw) -> None:
    rows = _decisive_teacher_rows(raw, "SELECT teacher, question_id, rollout, pos, gain "
                                       "FROM scores WHERE signal = 'rkl'")
    expected = _top20(rows)
    got = [(r["teacher"], r["question_id"], r["rollout"], r["pos"])
           for r in _rows(sandbox, _sql("most_hurt"))]
    assert got == expected and got
    # the ranking is not the cosine's: ordering the same tokens by cos changes it
    cos = {(t, q, r, p): c for t, q, r, p, c in raw.execute(
        "SELECT teacher, question_id, rollout, pos, cos FROM scores WHERE signal = 'rkl'"
    ).fetchall()}
    by_cos = sorted(got, key=lambda k: (k[0], cos[k] if cos[k] is not None else 9, *k[1:]))
    assert by_cos != got


def test_most_hurt_by_advantage_matches_brute_force(sandbox, raw) -> None:
    rows = _decisive_teacher_rows(raw, "SELECT teacher, question_id, rollout, pos, advantage "
                                       "FROM node_teacher")
    got = [(r["teacher"], r["question_id"], r["rollout"], r["pos"])
           for r in _rows(sandbox, _sql("most_hurt_advantage"))]
    assert got == _top20(rows) and got


def test_hurts_while_helps_uses_edge_labels_at_decisive_nodes(sandbox, raw) -> None:
    rows = _decisive_teacher_rows(raw, "SELECT teacher, question_id, rollout, pos, label_edge "
                                       "FROM scores WHERE signal = 'rkl'")
    labels: dict[tuple, set[str]] = defaultdict(set)
    for _t, q, r, pos, label in rows:
        labels[(q, r, pos)].add(label)
    expected = {k for k, v in labels.items() if {"helps", "hurts"} <= v}
    got = _rows(sandbox, _sql("hurts_while_helps"))
    assert {(r["question_id"], r["rollout"], r["pos"]) for r in got} == expected
    gaps = [r["advantage_gap"] for r in got]
    assert gaps == sorted(gaps, reverse=True)


def test_switching_matches_a_python_loop(sandbox, raw) -> None:
    nodes = raw.execute(
        "SELECT question_id, rollout, pos, decisive, best_teacher FROM nodes "
        "ORDER BY question_id, rollout, pos"
    ).fetchall()
    # a pair is two consecutive decisive nodes of a rollout that both have a best teacher
    switches: dict[tuple, int] = defaultdict(int)
    pairs: dict[tuple, int] = defaultdict(int)
    prev: dict[tuple, str | None] = {}
    for q, r, _pos, decisive, teacher in nodes:
        if not decisive:
            continue
        key = (q, r)
        if key in prev and teacher is not None and prev[key] is not None:
            pairs[key] += 1
            switches[key] += teacher != prev[key]
        prev[key] = teacher
    got = _rows(sandbox, _sql("best_teacher_switching"))
    assert {(r["question_id"], r["rollout"]) for r in got} == set(prev)
    for row in got:
        key = (row["question_id"], row["rollout"])
        assert (row["switches"], row["pairs"]) == (switches[key], pairs[key])
        rate = switches[key] / pairs[key] if pairs[key] else None
        assert row["switch_rate"] == pytest.approx(rate)
