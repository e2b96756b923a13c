"""Every preset runs on a fixture run; two are recomputed independently in Python."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from engine.fixtures import write_fixture_db
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


def _rows(sandbox, sql: str) -> list[dict]:
    stream = start_query(sandbox, sql, row_limit=10**6)
    out: list[dict] = []
    while (batch := stream.next_batch()) is not None:
        out.extend(batch.to_pylist())
    return out


@pytest.mark.parametrize("preset", PRESETS, ids=[p.id for p in PRESETS])
def test_every_preset_runs_and_returns_rows(sandbox, preset) -> None:
    rows = _rows(sandbox, preset.sql)
    assert rows, f"preset {preset.id} returned no rows on the fixture"


def test_token_presets_carry_the_jump_key(sandbox) -> None:
    for pid in ("most_hurt", "sign_disagreement"):
        sql = next(p.sql for p in PRESETS if p.id == pid)
        assert {"question_id", "rollout", "pos"} <= set(_rows(sandbox, sql)[0])


def test_most_hurt_matches_brute_force(sandbox, fixture_db: Path) -> None:
    con = duckdb.connect(str(fixture_db), read_only=True)
    raw = con.execute(
        "SELECT s.teacher, s.question_id, s.rollout, s.pos, s.cos FROM scores s "
        "JOIN teachers t USING (teacher) WHERE s.signal = 'rkl' AND NOT t.is_control "
        "AND s.label = 'hurts'"
    ).fetchall()
    con.close()
    per_teacher: dict[str, list[tuple]] = defaultdict(list)
    for teacher, q, r, pos, cos in raw:
        per_teacher[teacher].append((cos, q, r, pos))
    expected = [
        (teacher, q, r, pos)
        for teacher in sorted(per_teacher)
        for cos, q, r, pos in sorted(per_teacher[teacher])[:20]
    ]
    got = [(r["teacher"], r["question_id"], r["rollout"], r["pos"])
           for r in _rows(sandbox, next(p.sql for p in PRESETS if p.id == "most_hurt"))]
    assert got == expected


def test_switching_matches_a_python_loop(sandbox, fixture_db: Path) -> None:
    con = duckdb.connect(str(fixture_db), read_only=True)
    nodes = con.execute(
        "SELECT question_id, rollout, pos, best_teacher, best_prob FROM nodes "
        "ORDER BY question_id, rollout, pos"
    ).fetchall()
    con.close()
    # a pair is two consecutive probed nodes that both have a confident leader
    switches: dict[tuple, int] = defaultdict(int)
    pairs: dict[tuple, int] = defaultdict(int)
    prev: dict[tuple, tuple] = {}
    for q, r, _pos, teacher, prob in nodes:
        key = (q, r)
        if key in prev:
            p_teacher, p_prob = prev[key]
            if prob is not None and p_prob is not None and prob >= 0.9 and p_prob >= 0.9:
                pairs[key] += 1
                switches[key] += teacher != p_teacher
        prev[key] = (teacher, prob)
    sql = next(p.sql for p in PRESETS if p.id == "best_teacher_switching")
    for row in _rows(sandbox, sql):
        key = (row["question_id"], row["rollout"])
        assert (row["switches"], row["pairs"]) == (switches[key], pairs[key])
        rate = switches[key] / pairs[key] if pairs[key] else None
        assert row["switch_rate"] == pytest.approx(rate)
