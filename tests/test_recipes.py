"""Every recipe in recipes/: placeholders marked EDIT, the study's six kinds of teacher
configuration, and a real run of one question with tiny local models standing in for Qwen3.

A recipe is copied with its model paths pointed at a tiny student and a tiny external teacher
(one shared tokenizer with a Qwen3-like chat template), its data at a tiny question file of its
preset's format, and its sizes shrunk; everything else (prompts, chat template switches,
verifier, [derived], [[contexts]]) is exercised as written.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_helpers import run_ok, table
from tiny_world import make_model, make_tokenizer, save
from transformers import PreTrainedTokenizerFast

from engine.inputs.config import ConfigError, parse_config
from engine.inputs.prompts import template_fields

torch.set_num_threads(1)

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))
EDIT_LINE = re.compile(r'^\s*(model|path)\s*=\s*"([^"]*)"(.*)$')
PLACEHOLDER_DIRS = ("/models/", "/data/")  # what a recipe's paths start with until edited
DERIVED = {"few_shot", "contrastive_correct", "contrastive_incorrect"}
CHAT = (  # Qwen3's layout in brief: enable_thinking = false writes an empty think block
    "{%- for m in messages -%}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n"
    "{%- if enable_thinking is defined and not enable_thinking -%}<think>\n\n</think>\n\n"
    "{%- endif -%}{%- endif -%}"
)
SPECIAL = ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]

pytestmark = pytest.mark.skipif(not RECIPES, reason="no recipes/*.toml")


def _recipes() -> list[Any]:
    return [pytest.param(p, id=p.stem) for p in RECIPES]


def _raw(recipe: Path) -> dict[str, Any]:
    return tomllib.loads(recipe.read_text())


# -------------------------------------------------------------------------------------------------
# A TOML writer for the parsed recipe (the project has no TOML writer dependency)

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):  # JSON's string escapes are valid in TOML basic strings
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }" \
            if v else "{}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dump_toml(doc: dict[str, Any]) -> str:
    """Top-level keys, [tables] and [[arrays of tables]]; deeper tables inline. Round-trip
    checked, so a value the writer gets wrong fails here rather than as a config error."""
    head: list[str] = []
    body: list[str] = []
    for k, v in doc.items():
        if isinstance(v, dict):
            body += ["", f"[{_key(k)}]", *(f"{_key(a)} = {_value(b)}" for a, b in v.items())]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for row in v:
                body += ["", f"[[{_key(k)}]]",
                         *(f"{_key(a)} = {_value(b)}" for a, b in row.items())]
        else:
            head.append(f"{_key(k)} = {_value(v)}")
    text = "\n".join(head + body) + "\n"
    assert tomllib.loads(text) == doc, "TOML writer round trip"
    return text


# -------------------------------------------------------------------------------------------------
# Tiny stand-ins


def _chat_tokenizer() -> PreTrainedTokenizerFast:
    tok = make_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": SPECIAL})
    tok.chat_template = CHAT
    return tok


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny student and one tiny external teacher sharing a chat tokenizer."""
    root = tmp_path_factory.mktemp("recipe-models")
    tok = _chat_tokenizer()
    out = {}
    for name, seed, hidden in (("student", 1, 32), ("teacher", 2, 48)):
        model = make_model(tok, seed, hidden=hidden)
        model.config.max_position_embeddings = 4096  # few-shot and contrastive prompts are long
        out[name] = save(model, tok, root / name)
    return out


def write_questions(path: Path, preset: str, n: int = 4) -> Path:
    """n tiny questions in the column layout of a dataset preset (n > 2: few-shot needs others)."""
    rows: list[dict[str, Any]] = []
    for i in range(n):
        a, b = 3 + i, 4 + 2 * i
        if preset == "math500":
            rows.append({"problem": f"{a}+{b}", "solution": f"{a}+{b}={a + b}, \\boxed{{{a + b}}}",
                         "answer": str(a + b), "subject": "Prealgebra",
                         "unique_id": f"test/prealgebra/{i}.json", "level": 1})
        elif preset == "gsm8k":
            rows.append({"question": f"{a}+{b}", "answer": f"{a}+{b}=<<{a}+{b}={a + b}>>{a + b}"
                                                           f"\n#### {a + b}"})
        else:
            pytest.fail(f"no tiny question file for preset {preset!r}: add one to this test")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def shrink(raw: dict[str, Any], models: dict[str, Path], data: Path) -> dict[str, Any]:
    """The recipe with tiny models, tiny data, output in the test's directory, tiny sizes."""
    cfg = copy.deepcopy(raw)
    cfg.update(output_dir="run", device="cpu", dtype="float32")
    cfg["student"]["model"] = str(models["student"])
    cfg["data"] = {**cfg["data"], "path": str(data), "limit": 0}
    for t in cfg.get("teachers", []):
        if t.get("model"):
            t["model"] = str(models["teacher"])
    for c in cfg.get("contexts", []):
        if c.get("model") != "student":
            c["model"] = str(models["teacher"])
        c["max_new_tokens"] = 4
    cfg["verifier"] = {**cfg.get("verifier", {}), "timeout_s": 60.0}  # a busy CPU, a pool
    cfg["sampling"] = {**cfg.get("sampling", {}), "max_new_tokens": 8, "rollouts": 2}
    cfg["candidates"] = {**cfg.get("candidates", {}), "student_top_k": 2, "teacher_top_k": 1}
    cfg["continuations"] = {**cfg.get("continuations", {}), "n": 2}
    cfg["nodes"] = {"strategy": "stride:3", "budget_tokens": 0}
    cfg["bootstrap"] = {"draws": 20}
    return cfg


def without_derived(raw: dict[str, Any]) -> dict[str, Any]:
    """The recipe minus [derived], [[contexts]] and the teachers whose prompts need them."""
    cfg = copy.deepcopy(raw)
    names = DERIVED | {c["name"] for c in cfg.pop("contexts", [])}
    cfg.pop("derived", None)
    cfg["teachers"] = [t for t in cfg["teachers"]
                       if not template_fields(t.get("prompt", "{question}")) & names]
    return cfg


def _write(tmp_path: Path, recipe: Path, cfg: dict[str, Any]) -> Path:
    path = tmp_path / recipe.name
    path.write_text(dump_toml(cfg))
    return path


def _run_one_question(config: Path) -> Path:
    return run_ok(config, "--limit", "1")


# -------------------------------------------------------------------------------------------------
# The recipes as committed


def test_recipes_exist() -> None:
    assert len(RECIPES) >= 2, "recipes/ should hold the study's configs"


@pytest.mark.parametrize("recipe", _recipes())
def test_recipe_paths_are_marked_placeholders(recipe: Path) -> None:
    """Every model and data path is a placeholder on a line marked EDIT: no machine's path."""
    text = recipe.read_text()
    marked: dict[str, str] = {}
    for line in text.splitlines():
        m = EDIT_LINE.match(line)
        if m:
            key, value, rest = m.groups()
            assert "# EDIT" in rest, f"{recipe.name}: {key} line not marked '# EDIT': {line}"
            assert value.startswith(PLACEHOLDER_DIRS), \
                f"{recipe.name}: {value!r} is not a placeholder under {PLACEHOLDER_DIRS}"
            marked[value] = key
    raw = _raw(recipe)
    paths = [raw["student"]["model"], raw["data"]["path"]]
    paths += [t["model"] for t in raw.get("teachers", []) if t.get("model")]
    paths += [c["model"] for c in raw.get("contexts", []) if c.get("model") != "student"]
    for p in paths:
        assert p in marked, f"{recipe.name}: path {p!r} is not on its own '# EDIT' line"
    assert text.startswith("#"), f"{recipe.name}: header comment missing"
    for cmd in ("plan", "run"):
        assert f"opd-engine {cmd} recipes/{recipe.name}" in text, \
            f"{recipe.name}: header should say `opd-engine {cmd} recipes/{recipe.name}`"


@pytest.mark.parametrize("recipe", _recipes())
def test_recipe_as_committed_fails_only_on_its_placeholders(recipe: Path) -> None:
    """Unedited, the config's only problems are the placeholder paths that do not exist."""
    with pytest.raises(ConfigError) as e:
        parse_config(recipe)
    others = [p for p in e.value.problems if not any(d in p for d in PLACEHOLDER_DIRS)
              or "does not exist" not in p]
    assert not others, f"{recipe.name}: {others}"


@pytest.mark.parametrize("recipe", _recipes())
def test_recipe_has_the_studys_six_configurations(recipe: Path) -> None:
    """External teacher; self + answer, solution, generated summary, contrastive, few-shot."""
    raw = _raw(recipe)
    st, where = raw["student"], recipe.name
    assert st.get("chat_template") is True, f"{where}: Qwen3 needs its chat template"
    assert st.get("chat_template_kwargs", {}).get("enable_thinking") is True, \
        f"{where}: the study's student thinks (chat_template_kwargs enable_thinking = true)"
    assert raw["data"]["preset"] in ("math500", "gsm8k"), where
    assert raw["verifier"]["kind"] == "math_verify", f"{where}: maths answers need math_verify"
    assert raw["verifier"].get("answer_after") == "</think>", f"{where}: judge after </think>"
    assert raw["sampling"]["max_new_tokens"] >= 2048, f"{where}: thinking needs a thinking length"

    teachers = raw["teachers"]
    names = [t["name"] for t in teachers]
    assert len(set(names)) == len(names), f"duplicate teacher names: {names}"
    contexts = {c["name"]: c for c in raw.get("contexts", [])}
    derived = raw.get("derived", {})
    fields = {t["name"]: template_fields(t.get("prompt", "{question}")) for t in teachers}
    selfs = {n: f for n, f in fields.items()
             if next(t for t in teachers if t["name"] == n)["kind"] == "self"}

    kinds = {
        "external": [t["name"] for t in teachers if t["kind"] == "external" and t.get("model")],
        "self + answer": [n for n, f in selfs.items()
                          if "final_answer" in f and "solution" not in f],
        "self + solution": [n for n, f in selfs.items() if "solution" in f],
        "self + generated summary": [n for n, f in selfs.items() if f & contexts.keys()],
        "self + contrastive": [n for n, f in selfs.items()
                               if {"contrastive_correct", "contrastive_incorrect"} <= f],
        "self + few-shot": [n for n, f in selfs.items() if "few_shot" in f],
    }
    missing = [k for k, found in kinds.items() if not found]
    assert not missing, f"{recipe.name}: no teacher of kind(s) {missing}"
    assert derived.get("few_shot", 0) >= 1, f"{where}: [derived] few_shot >= 1"
    assert "{question}" in derived.get("few_shot_template", ""), where
    assert derived.get("contrastive_missing") in ("solution", "skip"), where
    assert derived.get("contrastive_after") == "</think>", where  # rollouts are long thoughts
    for c in contexts.values():
        assert "solution" in template_fields(c["prompt"]), f"{where}: summarise the solution"
        assert c.get("max_new_tokens", 0) >= 1 and "seed" in c, f"{where}: context {c['name']}"
        assert c["name"] not in names and c["name"] not in DERIVED, where


# -------------------------------------------------------------------------------------------------
# The recipes on tiny models


@pytest.mark.parametrize("recipe", _recipes())
def test_recipe_core_runs_today(recipe: Path, models: dict[str, Path], tmp_path: Path) -> None:
    """Without [derived] and [[contexts]], the rest of the recipe (chat template with thinking,
    math-verify, preset, external, answer and solution teachers) loads and runs."""
    raw = _raw(recipe)
    data = write_questions(tmp_path / "questions.jsonl", raw["data"]["preset"])
    config = _write(tmp_path, recipe, without_derived(shrink(raw, models, data)))
    cfg = parse_config(config)
    db = _run_one_question(config)
    stored = [t for (t,) in table(db, "SELECT teacher FROM teachers ORDER BY ordinal")]
    assert stored == [t.name for t in cfg.all_teachers]
    assert table(db, "SELECT count(*) FROM questions") == [(1,)]


@pytest.mark.parametrize("recipe", _recipes())
def test_recipe_config_loads(recipe: Path, models: dict[str, Path], tmp_path: Path) -> None:
    """The whole recipe, [derived] and [[contexts]] included, is a valid config."""
    raw = _raw(recipe)
    data = write_questions(tmp_path / "questions.jsonl", raw["data"]["preset"])
    cfg = parse_config(_write(tmp_path, recipe, shrink(raw, models, data)))
    assert [t.name for t in cfg.teachers] == [t["name"] for t in raw["teachers"]]


@pytest.mark.parametrize("recipe", _recipes())
def test_recipe_runs_on_tiny_models(recipe: Path, models: dict[str, Path],
                                    tmp_path: Path) -> None:
    """`opd-engine run` of one question writes every configured teacher into the database."""
    raw = _raw(recipe)
    data = write_questions(tmp_path / "questions.jsonl", raw["data"]["preset"])
    db = _run_one_question(_write(tmp_path, recipe, shrink(raw, models, data)))
    stored = {t for (t,) in table(db, "SELECT teacher FROM teachers")}
    configured = {t["name"] for t in raw["teachers"]}
    assert configured <= stored, f"missing from teachers: {sorted(configured - stored)}"
    shown = {t for (t,) in table(db, """SELECT teacher FROM teacher_prompts
                                         UNION SELECT teacher FROM rollout_prompts""")}
    assert configured <= shown, f"no stored prompt for: {sorted(configured - shown)}"
    written = {c for (c,) in table(db, "SELECT context FROM contexts")}
    assert written == {c["name"] for c in raw.get("contexts", [])}
    assert table(db, "SELECT count(*) FROM questions") == [(1,)]
