"""The toy world end to end through the CLI, and the committed demo against its config/models."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import duckdb
import pytest
from engine_helpers import cli

from engine import schema
from engine.config import parse_config

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def test_mini_world_cli_builds_a_schema_valid_demo(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    code, out = cli("toy", "build", "--mini", "--out", str(tmp_path))
    assert code == 0, out
    assert time.perf_counter() - t0 < 90
    db = tmp_path / "demo.duckdb"
    con = schema.open_run(db)
    schema.check_schema(con)
    assert con.execute("SELECT count(*) FROM scores").fetchone()[0] > 0
    meta = schema.read_meta(con)
    assert meta["config_hash"] == parse_config(tmp_path / "demo.toml").fingerprint()
    assert not (tmp_path / ".demo-run").exists()  # scratch run directory cleaned up


@pytest.fixture(scope="module")
def demo() -> duckdb.DuckDBPyConnection:
    db = SAMPLE / "demo.duckdb"
    if not db.exists():
        pytest.fail("sample_data/demo.duckdb is missing: build it with `opd-engine toy build`")
    return schema.open_run(db)


def test_committed_demo_records_its_config_and_models(demo: duckdb.DuckDBPyConnection) -> None:
    schema.check_schema(demo)
    meta = schema.read_meta(demo)
    cfg = parse_config(SAMPLE / "demo.toml")
    assert meta["config_hash"] == cfg.fingerprint()
    assert meta["config_toml"] == (SAMPLE / "demo.toml").read_text()
    models = json.loads(meta["models"])
    for name, entry in models.items():
        files = sorted((SAMPLE / "models" / Path(entry["path"]).name).glob("*.safetensors"))
        h = hashlib.sha256()
        for f in files:
            h.update(f.read_bytes())
        assert h.hexdigest() == entry["sha256"], name
    n_q, n_r = demo.execute("SELECT count(*), sum(n_rollouts) FROM questions").fetchone()
    assert n_q >= 40 and n_r >= 160
    assert meta["node_strategy"] == "all"
    sizes = sum(f.stat().st_size for f in (SAMPLE / "models").rglob("*.safetensors"))
    assert sizes <= 8 * 2**20 and (SAMPLE / "demo.duckdb").stat().st_size <= 30 * 2**20


def test_rerunning_one_demo_question_reproduces_its_rows(
        demo: duckdb.DuckDBPyConnection) -> None:
    from engine import runner

    cfg = parse_config(SAMPLE / "demo.toml")
    qid = demo.execute("""SELECT question_id FROM questions WHERE status = 'ok'
                          ORDER BY n_continuations LIMIT 1""").fetchone()[0]
    q = next(q for q in runner.load_run_questions(cfg) if q.id == qid)
    world = runner.load_world(cfg)
    tables, _ = runner.process_question(world, q)
    world.close()
    con = duckdb.connect()
    con.execute(f"ATTACH '{SAMPLE / 'demo.duckdb'}' AS demo_db (READ_ONLY)").fetchall()
    for t in schema.QUESTION_TABLES:
        cols = [c for c in t.column_names if c != "seconds"]
        fresh = tables[t.name].select(cols)
        con.register("fresh", fresh)
        stored = f"SELECT {', '.join(cols)} FROM demo_db.{t.name} WHERE question_id = ?"
        diff = con.execute(f"""SELECT count(*) FROM (({stored} EXCEPT ALL SELECT * FROM fresh)
                               UNION ALL (SELECT * FROM fresh EXCEPT ALL {stored}))""",
                           [qid, qid]).fetchall()[0][0]
        assert diff == 0, t.name
        con.unregister("fresh")
