"""Config validation: every bad input named with its fix, exit 2, nothing started or written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import cli
from tiny_world import make_world

from engine.inputs.config import ConfigError, parse_config


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
    ("[bootstrap]", "[scores]\ntau_stakes = 1.5\n\n[bootstrap]", "tau_stakes must be in [0, 1]"),
    ("[bootstrap]", "[scores]\nmargin = 3\n\n[bootstrap]", "margin must be in [0, 2]"),
    ("[bootstrap]", "[scores]\nleader_share = 0\n\n[bootstrap]",
     "leader_share must be in (0, 1]"),
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
    rules = cfg.scores  # method.md revision 2 defaults
    assert (rules.tau_stakes, rules.plausible, rules.epsilon, rules.margin,
            rules.leader_share, rules.rho) == (0.1, 0.01, 0.05, 0.1, 0.9, 0.05)


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
    from engine.inputs.config import parse_config
    from engine.run.orchestrate import process_question
    from engine.run.plan import plan_question
    from engine.run.world import load_run_questions, load_world

    cfg_path = make_world(tmp_path, questions=2, max_new=6, rollouts=2, n=3,
                          strategy="entropy:3")
    cfg = parse_config(cfg_path)
    world = load_world(cfg)
    for q in load_run_questions(cfg):
        plan = plan_question(world, q)
        _, stats = process_question(world, q)
        assert (plan.nodes, plan.continuations) == (stats.n_nodes, stats.n_continuations)
        assert plan.nodes <= 3 * 2
    world.close()
    code, out = cli("plan", str(cfg_path), "--sample", "2")
    assert code == 0, out
    assert "probed nodes" in out and "calibration on cpu" in out


def _copy_model(src: Path, dst: Path, *, drop: tuple[str, ...] = ()) -> Path:
    import shutil

    shutil.copytree(src, dst)
    for name in drop:
        (dst / name).unlink()
    return dst


def _bad_inputs(world: Path) -> list[tuple[str, str, str, list[str]]]:
    """(id, old, new, expected message) per bad input; files they need are made here."""
    import json

    root = world.parent
    (root / "latin1.jsonl").write_bytes(
        b'{"id": "a", "question": "caf\xe9", "final_answer": "1"}\n')
    (root / "huge.jsonl").write_bytes(b'{"id": "a", "question": "' + b"x" * (9 << 20) + b'"}\n')
    (root / "a_file").write_text("not a directory")
    if not (root / "no_tok").exists():
        _copy_model(root / "teacher", root / "no_tok",
                    drop=("tokenizer.json", "tokenizer_config.json"))
    if not (root / "other_vocab").exists():
        _copy_model(root / "teacher", root / "other_vocab")
        tj = root / "other_vocab" / "tokenizer.json"
        data = json.loads(tj.read_text())
        vocab = data["model"]["vocab"]
        a, b = "a", "b"
        vocab[a], vocab[b] = vocab[b], vocab[a]
        tj.write_text(json.dumps(data))
    cases = [
        ("non-utf8", 'path = "questions.jsonl"', 'path = "latin1.jsonl"', ["not valid UTF-8"]),
        ("huge line", 'path = "questions.jsonl"', 'path = "huge.jsonl"', ["longer than 8 MiB"]),
        ("unwritable out", 'output_dir = "run"', 'output_dir = "a_file/run"',
         ["not a writable directory"]),
        ("no tokenizer", 'model = "teacher"', 'model = "no_tok"', ["has no tokenizer files"]),
        ("vocab mismatch", 'model = "teacher"', 'model = "other_vocab"', ["tokenizers differ"]),
        ("verifier module", 'kind = "numeric"', 'kind = "callable"\ncallable = "nope_mod:f"',
         ["cannot import module 'nope_mod'"]),
        ("format spec", 'prompt = "Q:{question} ={final_answer} A:"',
         'prompt = "Q:{question:d} A:"', ["Unknown format code 'd'"]),
        ("system prompt", 'prompt = "Q:{{question}} A:"\n\n[data]',
         'prompt = "Q:{{question}} A:"\nsystem_prompt = "Be brief."\n\n[data]',
         ["apply only with chat_template = true"]),
        ("no chat template", 'prompt = "Q:{{question}} A:"\n\n[data]',
         'prompt = "Q:{{question}} A:"\nchat_template = true\n\n[data]',
         ["has no chat template"]),
    ]
    import torch

    if not torch.cuda.is_available():  # on a GPU machine the device is fine: nothing to test
        cases.append(("no cuda", "seed = 0", 'seed = 0\ndevice = "cuda"',
                      ["CUDA is not available"]))
    return cases


def test_bad_inputs_are_named_before_anything_is_written(world: Path, tmp_path: Path) -> None:
    """validate says what run would fail on; run fails before creating the output dir."""
    for name, old, new, messages in _bad_inputs(world):
        old = old.replace("{{", "{").replace("}}", "}")
        new = new.replace("{{", "{").replace("}}", "}")
        cfg = _variant(world, tmp_path, old, new)
        for command in ("validate", "run"):
            code, out = cli(command, str(cfg))
            flat = " ".join(out.split())
            assert code == 2, (name, command, out)
            assert all(m in flat for m in messages), (name, command, out)
            assert "Traceback" not in out, (name, out)
        assert not (world.parent / "run").exists(), name


def test_negative_limit_is_refused(world: Path) -> None:
    code, out = cli("run", str(world), "--limit", "-1")
    assert code == 2 and "--limit must be >= 0" in out
    assert not (world.parent / "run").exists()


def test_any_dataset_field_is_a_placeholder_and_a_fixed_config_resumes(tmp_path: Path) -> None:
    """A real column ({hint}) is accepted; a run that failed on a template wrote nothing, so the
    corrected config is not refused as 'a different config'."""
    import json

    cfg = make_world(tmp_path, questions=1, max_new=3, rollouts=1, n=2)
    rows = [json.loads(r) | {"hint": "add"} for r in
            (tmp_path / "questions.jsonl").read_text().splitlines()]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = cfg.read_text()
    cfg.write_text(text.replace('={final_answer} A:"', '={final_answer:d} A:"'))
    code, out = cli("run", str(cfg))
    assert code == 2 and "Unknown format code" in out
    assert not (tmp_path / "run").exists()
    cfg.write_text(text.replace('={final_answer} A:"', '={final_answer} {hint} A:"'))
    code, out = cli("run", str(cfg))
    assert code == 0, out


def test_disk_full_says_finished_parts_survive(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from engine.runfile import store

    cfg = make_world(tmp_path, questions=3, max_new=3, rollouts=1, n=2)
    real = store.write_part
    calls = []

    def full_after_one(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run"))
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "write_part", full_after_one)
    code, out = cli("run", str(cfg))
    flat = " ".join(out.split())
    assert code == 2 and "No space left on device" in flat, out
    assert "The 1 finished question(s)" in flat and "are intact" in flat and "Traceback" not in out
    monkeypatch.setattr(store, "write_part", real)
    code, out = cli("run", str(cfg))
    assert code == 0 and "resuming: 1 question(s) already done" in out, out


# -------------------------------------------------------------------------------------------------
# One declaration: the models, the generated reference, --set, hub options, fingerprints

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
DEMO_FINGERPRINT = "caf0f8f35c166c4d"
"""What sample_data/demo.duckdb's meta stores as config_hash; resumed runs compare it."""


def test_demo_fingerprint_is_the_one_its_database_stores() -> None:
    import duckdb

    con = duckdb.connect(str(SAMPLE / "demo.duckdb"), read_only=True)
    try:
        stored = con.execute("SELECT value FROM meta WHERE key = 'config_hash'").fetchone()[0]
    finally:
        con.close()
    assert parse_config(SAMPLE / "demo.toml").fingerprint() == stored == DEMO_FINGERPRINT


def test_fingerprints_of_configs_written_before_the_models_are_unchanged(world: Path,
                                                                          tmp_path: Path) -> None:
    """Keys left out, written at their defaults, or unset hub options: the same hash."""
    base = parse_config(world).fingerprint()
    spelled = _variant(world, tmp_path, 'model = "student"',
                       'model = "student"\ntrust_remote_code = false')
    assert parse_config(spelled).fingerprint() == base
    revised = _variant(world, tmp_path, 'model = "student"', 'model = "student"\nrevision = "v2"')
    assert parse_config(revised).fingerprint() != base


def test_readme_config_reference_is_generated_from_the_models() -> None:
    from engine.inputs.config_doc import BEGIN, END, readme_block

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert BEGIN in readme and END in readme, "README lost the GENERATED config markers"
    block = readme[readme.index(BEGIN):readme.index(END) + len(END)]
    assert block == readme_block(), "README config reference is stale: run " \
                                    "scripts/gen_config_doc.py"


def test_defaults_print_every_key_and_parse_back_to_the_defaults(world: Path) -> None:
    import tomllib

    from engine.inputs import config as c

    code, text = cli("config", "--defaults")
    assert code == 0, text
    raw = tomllib.loads(text)
    for name, table in c.SECTIONS.items():  # every key shown (an unset revision commented out)
        shown = set(raw.get(name, {}))
        assert shown | {"revision"} >= set(table.model_fields), (name, shown)
        for key in table.model_fields:
            assert f"{key} = " in text, (name, key)
    assert "# [[contexts]]" in text and "contexts" not in raw  # an optional, commented example
    # the required keys: the world's models (its questions.jsonl is the example's name)
    filled = (text.replace('model = "path/or/hub-id"', 'model = "teacher"', 2)
              .replace('model = "teacher"', 'model = "student"', 1))
    cfg_path = world.parent / "defaults.toml"
    cfg_path.write_text(filled)
    cfg = parse_config(cfg_path)
    for name, table in c.SECTIONS.items():
        if name not in ("student", "data"):
            assert getattr(cfg, name) == table(), name
    assert cfg.nodes.strategy == "entropy:32" and cfg.student.model.endswith("student")
    assert [t.kind for t in cfg.teachers] == ["external", "self"]
    assert cfg.teachers[0].model.endswith("teacher") and not cfg.contexts


def test_effective_config_parses_back_to_the_same_run(world: Path) -> None:
    from engine.inputs.config_doc import effective_toml

    sets = ("sampling.rollouts=3", "teachers.strong.temperature=0.5", "nodes.strategy=entropy:2",
            "data.fields={ question = \"question\" }", "student.revision=\"main\"")
    cfg = parse_config(world, overrides=sets)
    again = world.parent / "effective.toml"
    again.write_text(effective_toml(cfg))
    assert parse_config(again).fingerprint() == cfg.fingerprint()
    code, out = cli("config", str(world), *[a for s in sets for a in ("--set", s)])
    assert code == 0 and "rollouts = 3" in out and 'revision = "main"' in out, out


def test_set_overrides_keys_and_is_recorded(world: Path) -> None:
    import tomllib

    cfg = parse_config(world, overrides=["sampling.rollouts=3", "nodes.strategy=entropy:2",
                                         "teachers.strong.temperature=0.5", "seed=7",
                                         "signals.families=[\"rkl\"]"])
    assert (cfg.sampling.rollouts, cfg.nodes.strategy, cfg.teachers[0].temperature, cfg.seed,
            cfg.signals.families) == (3, "entropy:2", 0.5, 7, ("rkl",))
    assert cfg.fingerprint() != parse_config(world).fingerprint()
    assert "--set sampling.rollouts=3" in cfg.raw_toml  # the run's meta: the effective config
    assert tomllib.loads(cfg.raw_toml)["sampling"]["rollouts"] == 3
    assert parse_config(world).raw_toml == world.read_text()  # without --set: the file as is


@pytest.mark.parametrize(("item", "message"), [
    ("sampling.temprature=0.5", "[sampling] has no key 'temprature' (did you mean 'temperature'?"),
    ("sampling.rollouts=two", "'rollouts' must be an integer, got 'two' (from --set"),
    ("sampling.rollouts=0", "rollouts must be >= 1"),
    ("teachers.nobody.temperature=1", "no teacher named 'nobody'"),
    ("colour=3", "unknown key or table 'colour'"),
    ("sampling", "expected section.key=value"),
])
def test_a_bad_set_is_one_clear_error(world: Path, item: str, message: str) -> None:
    for command in ("validate", "run", "plan", "config"):
        code, out = cli(command, str(world), "--set", item)
        assert code == 2, (command, out)
        assert message in " ".join(out.split()), (command, out)
        assert "Traceback" not in out and "problem(s)" in out, (command, out)
    assert not (world.parent / "run").exists()


def test_every_problem_at_once_across_tables_and_entries(world: Path, tmp_path: Path) -> None:
    """Cross-key rules of one table still report beside the type and range errors."""
    cfg = _variant(world, tmp_path, 'kind = "external"\nmodel = "teacher"',
                   'kind = "external"\ntemperature = 0\nextra = 1')
    text = cfg.read_text().replace("rollouts = 2", "rollouts = 0").replace(
        'name = "self_answer"', 'name = "strong"')
    cfg.write_text(text.replace('kind = "numeric"', 'kind = "callable"\ntimeout_s = 0'))
    with pytest.raises(ConfigError) as e:
        parse_config(cfg)
    flat = "\n".join(e.value.problems)
    for message in ("teacher 'strong': an external teacher needs model", "temperature must be > 0",
                    "unknown key 'extra'", "duplicate or reserved name",
                    "rollouts must be >= 1", "needs callable = 'module:function'",
                    "timeout_s must be > 0"):
        assert message in flat, (message, flat)


def test_one_model_loaded_once_takes_one_revision(world: Path, tmp_path: Path) -> None:
    cfg = _variant(world, tmp_path, 'name = "self_answer"\nkind = "self"',
                   'name = "again"\nkind = "external"\nmodel = "teacher"\nrevision = "b"')
    with pytest.raises(ConfigError) as e:
        parse_config(cfg)
    assert "teacher 'again': model" in str(e.value) and "give both the same" in str(e.value)


def test_revision_and_trust_remote_code_reach_from_pretrained(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    import transformers

    from engine.models import loading

    seen: list[dict] = []

    def record(path: str, **kwargs: object) -> None:
        seen.append(kwargs)
        raise OSError("offline")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", record)
    with pytest.raises(loading.ModelLoadError):
        loading.load_model("org/model", device=torch.device("cpu"), dtype=torch.float32,
                           revision="v1", trust_remote_code=True)
    assert seen == [{"revision": "v1", "trust_remote_code": True}]


def test_meta_records_hub_models_by_commit_and_local_ones_as_before(
        world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    import huggingface_hub.constants

    from engine.inputs.weights import model_fingerprints

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--teacher"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "v2").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    cfg = parse_config(_variant(world, tmp_path, 'model = "teacher"',
                                'model = "org/teacher"\nrevision = "v2"\ntrust_remote_code = true'))
    models = model_fingerprints(cfg)
    assert models["strong"] == {"path": "org/teacher", "commit": commit, "bytes": 7,
                                "sha256": hashlib.sha256(b"weights").hexdigest(),
                                "revision": "v2", "trust_remote_code": True}
    student = Path(cfg.student.model)
    files = sorted(student.glob("*.safetensors"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    assert models["student"] == {"path": str(student), "bytes": sum(f.stat().st_size
                                                                  for f in files),
                                 "sha256": h.hexdigest()}
    assert [t.load_kwargs for t in cfg.all_teachers if t.model == "org/teacher"] == [
        {"revision": "v2", "trust_remote_code": True}] * 2  # the softened control: same weights
