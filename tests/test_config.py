"""Config validation: every bad input named with its fix, exit 2, nothing started or written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import cli
from tiny_world import make_world

from engine.config import ConfigError, parse_config


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("cfg"), questions=2)


def _variant(world: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = world.read_text()
    assert old in text, old
    cfg = world.parent / f"v_{tmp_path.name}.toml"
    cfg.write_text(text.replace(old, new, 1))
    return cfg


BAD = [
    ("seed = 0", "seed = 0\ncolour = 3", "unknown key or table 'colour'"),
    ("[sampling]", "[sampling]\ntemprature = 0.7", "unknown key 'temprature'"),
    ("rollouts = 2", 'rollouts = "two"', "'rollouts' must be an integer"),
    ("max_new_tokens = 8", "max_new_tokens = 0", "max_new_tokens must be >= 1"),
    ("[sampling]", "[sampling]\ntop_p = 1.5", "top_p must be in (0, 1]"),
    ("n = 4", "n = 1", "n must be >= 2"),
    ('strategy = "all"', 'strategy = "random:3"', "strategy must be all, stride:S"),
    ('path = "questions.jsonl"', 'path = "nope.jsonl"', "nope.jsonl does not exist"),
    ('model = "teacher"', 'model = "./missing"', "missing does not exist"),
    ('prompt = "Q:{question} ={final_answer} A:"', 'prompt = "Q:{question} {hint} A:"',
     "unknown placeholder(s) {hint}"),
    ('kind = "numeric"', 'kind = "llm_judge"', "kind must be one of"),
    ('kind = "self"', 'kind = "peer"', "kind must be 'external' or 'self'"),
    ("[bootstrap]\ndraws = 50", "[bootstrap]\ndraws = 5", "draws must be >= 20"),
    ("seed = 0", "seed = 0\ndevice = 'tpu'", "device must be auto, cpu, cuda"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD, ids=[b[2][:30] for b in BAD])
def test_bad_config_is_named_and_nothing_is_written(world: Path, tmp_path: Path, old: str,
                                                    new: str, message: str) -> None:
    cfg = _variant(world, tmp_path, old, new)
    for command in ("validate", "run"):
        code, out = cli(command, str(cfg))
        assert code == 2, out
        assert message in " ".join(out.split()), out
        assert "Traceback" not in out
    assert not (world.parent / "run").exists()


def test_all_problems_are_reported_at_once(world: Path, tmp_path: Path) -> None:
    cfg = _variant(world, tmp_path, "rollouts = 2", "rollouts = 0\ntop_k = -1")
    with pytest.raises(ConfigError) as e:
        parse_config(cfg)
    assert len(e.value.problems) == 2


def test_not_toml_and_missing_file(world: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[student\nmodel = 1")
    code, out = cli("validate", str(bad))
    assert code == 2 and "not valid TOML" in out
    code, out = cli("validate", str(tmp_path / "none.toml"))
    assert code == 2 and "does not exist" in out


def test_good_config_parses_with_controls(world: Path) -> None:
    cfg = parse_config(world)
    names = [t.name for t in cfg.all_teachers]
    assert names == ["strong", "self_answer", "ctrl_sharpened", "ctrl_softened"]
    soft = cfg.all_teachers[-1]
    assert soft.is_control and soft.temperature == 2.0 and soft.model == cfg.teachers[0].model
    assert cfg.fingerprint() == parse_config(world).fingerprint()


def test_validate_loads_nothing_heavy(world: Path) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from engine.cli import app\n"
        f"r = CliRunner().invoke(app, ['validate', {str(world)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert "HEAVY []" in res.stdout, res.stdout + res.stderr


def test_run_with_bad_dataset_line_names_it(world: Path, tmp_path: Path) -> None:
    (world.parent / "broken.jsonl").write_text('{"id": "a", "question": "1+1", '
                                                '"final_answer": "2"}\n{not json\n')
    cfg = _variant(world, tmp_path, 'path = "questions.jsonl"', 'path = "broken.jsonl"')
    code, out = cli("run", str(cfg))
    assert code == 2 and "broken.jsonl:2" in out and "malformed JSON" in out
    assert not (world.parent / "run").exists()


def test_plan_counts_what_run_does(tmp_path: Path) -> None:
    from engine import runner
    from engine.config import parse_config

    cfg_path = make_world(tmp_path, questions=2, max_new=6, rollouts=2, n=3,
                          strategy="entropy:3")
    cfg = parse_config(cfg_path)
    world = runner.load_world(cfg)
    for q in runner.load_run_questions(cfg):
        plan = runner.plan_question(world, q)
        _, stats = runner.process_question(world, q)
        assert (plan.nodes, plan.continuations) == (stats.n_nodes, stats.n_continuations)
        assert plan.nodes <= 3 * 2
    world.close()
    code, out = cli("plan", str(cfg_path), "--sample", "2")
    assert code == 0, out
    assert "probed nodes" in out and "calibration on cpu" in out
