"""The crash campaign: an engine process SIGKILLed at seeded moments (inside part writes,
between the renames of a rewrite, inside the merge, at random times), then resumed, must give
a database equal to an uninterrupted run in every table and column (same machine: bit-identical;
only wall-clock values differ) and leave no temp file behind.

CI runs the named failpoints and a few random kills; `OPD_KILLS=30 OPD_KILL_SEED=1` runs 30.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from tiny_world import add_contexts, make_world

from engine.runfile import schema

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
WALL_CLOCK = {"questions": {"seconds"}, "question_stages": {"seconds"}}
WALL_CLOCK_META = {"created_at", "merged_at", "merge_seconds", "timings"}


def _engine(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    e = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *args], env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run(cfg: Path, out: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    p = _engine("run", str(cfg), "--out", str(out), env=env)
    text, _ = p.communicate(timeout=300)
    return p.returncode, text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny world with a contrastive and a generated context: their cache and per-rollout
    prompts must survive a kill like everything else."""
    root = tmp_path_factory.mktemp("kill")
    cfg = add_contexts(make_world(root, questions=4, max_new=5, rollouts=2, n=3,
                                  verifier="has_seven"), summary_tokens=4)
    code, text = _run(cfg, root / "reference")
    assert code == 0, text
    return cfg, root / "reference" / "run.duckdb"


def _assert_same_database(got: Path, want: Path) -> None:
    con = duckdb.connect()
    con.execute(f"ATTACH '{want}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{got}' AS b (READ_ONLY)")
    for t in schema.TABLES + schema.SUMMARY_TABLES:
        cols = ", ".join(c for c in t.column_names if c not in WALL_CLOCK.get(t.name, ()))
        where = (f" WHERE key NOT IN ({', '.join(repr(k) for k in WALL_CLOCK_META)})"
                 if t.name == "meta" else "")
        a = f"SELECT {cols} FROM a.{t.name}{where}"
        b = f"SELECT {cols} FROM b.{t.name}{where}"
        diff = con.execute(f"SELECT count(*) FROM (({a} EXCEPT ALL {b}) UNION ALL "
                           f"({b} EXCEPT ALL {a}))").fetchone()[0]
        assert diff == 0, f"{t.name}: {diff} rows differ"
        assert con.execute(f"SELECT count(*) FROM b.{t.name}").fetchone()[0] > 0, t.name


def _assert_clean(run_dir: Path) -> None:
    leftovers = [p.name for p in [*run_dir.iterdir(), *(run_dir / "parts").iterdir()]
                 if p.name.startswith((".tmp-", ".old-", ".discarded-", ".run.duckdb."))]
    assert not leftovers, leftovers


def _resume_and_compare(cfg: Path, out: Path, want: Path) -> str:
    code, text = _run(cfg, out)
    assert code == 0, text
    assert "Traceback" not in text
    _assert_same_database(out / "run.duckdb", want)
    _assert_clean(out)
    return text


# (failpoint, the k-th time it is reached); each is where a kill once lost or blocked work
FAILPOINTS = [
    "write:before-rename@1",  # run tables written, not yet renamed into place
    "write:before-rename@3",  # a question's part written, not yet renamed
    "merge:before-replace@1",  # the consolidated database written under its temp name
    "merge:after-replace@1",  # merge done, temp files not yet cleaned
]


@pytest.mark.parametrize("point", FAILPOINTS)
def test_kill_at_a_failpoint_then_resume(world: tuple[Path, Path], tmp_path: Path,
                                         point: str) -> None:
    cfg, want = world
    code, text = _run(cfg, tmp_path / "run", env={"OPD_FAILPOINT": point})
    assert code == -signal.SIGKILL, text
    _resume_and_compare(cfg, tmp_path / "run", want)


def test_kill_between_the_renames_of_a_rewrite(world: tuple[Path, Path], tmp_path: Path) -> None:
    """A resumed run rewrites run/: killed after run/ moved aside and before the new one came
    in, the directory has parts but no run/. The next `merge` and `run` recover it."""
    cfg, want = world
    out = tmp_path / "run"
    code, text = _run(cfg, out, env={"OPD_FAILPOINT": "write:before-rename@3"})
    assert code == -signal.SIGKILL, text
    code, text = _run(cfg, out, env={"OPD_FAILPOINT": "write:between-renames@1"})
    assert code == -signal.SIGKILL, text
    assert not (out / "run").exists() and any(out.glob(".old-run-*"))
    p = _engine("merge", str(out))
    merged, _ = p.communicate(timeout=300)
    assert p.returncode == 0 and "restored run/run" in merged, merged
    _resume_and_compare(cfg, out, want)


def test_fresh_keeps_the_old_run_until_the_new_one_starts(world: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    cfg, want = world
    out = tmp_path / "run"
    assert _run(cfg, out)[0] == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace('model = "teacher"', 'model = "./nope"')
                   .replace('path = "questions.jsonl"', f'path = "{cfg.parent}/questions.jsonl"')
                   .replace('model = "student"', f'model = "{cfg.parent}/student"'))
    p = _engine("run", str(bad), "--out", str(out), "--fresh")
    text, _ = p.communicate(timeout=300)
    assert p.returncode == 2 and "does not exist" in text, text
    _assert_same_database(out / "run.duckdb", want)  # the old run is untouched
    p = _engine("run", str(cfg), "--out", str(out), "--fresh",
                env={**os.environ, "OPD_FAILPOINT": "fresh:moving-aside@2"})
    text, _ = p.communicate(timeout=300)
    assert p.returncode == -signal.SIGKILL, text
    p = _engine("merge", str(out))  # the interrupted --fresh is undone: the old run is back
    text, _ = p.communicate(timeout=300)
    assert p.returncode == 0 and "restored the previous run" in text, text
    _assert_same_database(out / "run.duckdb", want)
    _assert_clean(out)


def test_second_process_is_refused_with_the_holder(world: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    import fcntl

    cfg, _ = world
    out = tmp_path / "run"
    out.mkdir()
    with (out / ".lock").open("a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write("pid 4242 on somehost since then: opd-engine run x.toml\n")
        f.flush()
        code, text = _run(cfg, out)
    assert code == 2 and "in use by another opd-engine process" in text and "pid 4242" in text
    assert not (out / "parts").exists()


def test_sigterm_says_what_finished_and_how_to_resume(world: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    cfg, want = world
    out = tmp_path / "run"
    p = _engine("run", str(cfg), "--out", str(out))
    deadline = time.monotonic() + 120
    while not list((out / "parts").glob("*/questions.parquet")):
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    text, _ = p.communicate(timeout=120)
    if p.returncode == 0:  # finished before the signal landed: nothing to check
        return
    assert p.returncode == 130, text
    assert "interrupted" in text and "run the same command again to resume" in \
        " ".join(text.split()).lower() and "Traceback" not in text, text
    _resume_and_compare(cfg, out, want)


def _random_kills(world: tuple[Path, Path], tmp_path: Path, kills: int, seed: int) -> None:
    cfg, want = world
    rng = random.Random(seed)
    for i in range(kills):
        out = tmp_path / f"run{i}"
        p = _engine("run", str(cfg), "--out", str(out))
        time.sleep(rng.uniform(0.5, 9.0))
        p.kill()
        p.communicate(timeout=60)
        if rng.random() < 0.3 and out.exists():  # a second kill during the resume
            p = _engine("run", str(cfg), "--out", str(out))
            time.sleep(rng.uniform(0.5, 6.0))
            p.kill()
            p.communicate(timeout=60)
        _resume_and_compare(cfg, out, want)
        shutil.rmtree(out)


def test_random_kills_then_resume(world: tuple[Path, Path], tmp_path: Path) -> None:
    """Two kills in the suite; the long profile is OPD_KILLS=30 OPD_KILL_SEED=1 (about 15 min)."""
    _random_kills(world, tmp_path, kills=int(os.environ.get("OPD_KILLS", "2")),
                  seed=int(os.environ.get("OPD_KILL_SEED", "0")))
