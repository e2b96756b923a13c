"""`build_world(mini=True)`: the whole toy world path in seconds, loaded like real models."""

from __future__ import annotations

import json
import random
import time
import tomllib
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine.toy.models import (
    MAX_NEW_TOKENS,
    SOLUTION_PROMPT,
    Arch,
    build_model,
    next_token_probs,
)
from engine.toy.task import FAMILIES, check_solution, random_problem, solve
from engine.toy.tokenizer import VOCAB, encode
from engine.toy.train import Recipe, train
from engine.toy.world import MODEL_NAMES, build_world

TEACHERS = {"strong", "specialist", "self_answer", "self_solution", "self_strong_sol",
            "self_contrast"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], float]:
    out = tmp_path_factory.mktemp("toy")
    called: list[Path] = []
    start = time.perf_counter()
    build_world(out, mini=True, log=lambda _: None, make_demo_db=called.append, threads=1)
    return out, called, time.perf_counter() - start


def test_mini_world_builds_fast_and_calls_the_demo_db_step(world) -> None:
    out, called, seconds = world
    assert seconds < 60
    assert called == [out / "demo.toml"]


def test_models_load_offline_with_auto_classes(world, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out, _, _ = world
    vocabs = []
    for name in MODEL_NAMES:
        folder = out / "models" / name
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder))
        vocabs.append(tok.get_vocab())
        assert model.config.vocab_size == len(VOCAB)
        gen = model.generation_config
        assert (gen.top_k, gen.top_p, gen.temperature) == (0, 1.0, 1.0)
        assert gen.eos_token_id == tok.eos_token_id and gen.pad_token_id == tok.pad_token_id
        ids = tok("Q:12+34 A:", return_tensors="pt")["input_ids"]
        assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(VOCAB))
    assert all(v == vocabs[0] for v in vocabs)  # one shared vocabulary


def test_positions_cover_the_longest_solution_context_and_response(world) -> None:
    out, _, _ = world
    rng = random.Random(0)
    longest = 0
    for _ in range(500):
        p = random_problem(rng, digits=(4,))
        sol = solve(p, rng)
        longest = max(longest, len(encode(SOLUTION_PROMPT.format(question=p.question,
                                                                  solution=sol))))
    config = json.loads((out / "models" / "student" / "config.json").read_text())
    assert config["max_position_embeddings"] >= longest + MAX_NEW_TOKENS


def test_question_file_is_valid(world) -> None:
    out, _, _ = world
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    assert {r["family"] for r in rows} == set(FAMILIES)
    assert any(r["misconception_case"] for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["solution"].endswith(f"#### {r['final_answer']}")
        assert check_solution(r["question"], r["solution"])


def test_demo_config_parses_with_the_expected_teachers(world) -> None:
    out, _, _ = world
    config = tomllib.loads((out / "demo.toml").read_text())
    teachers = {t["name"]: t for t in config["teachers"]}
    assert set(teachers) == TEACHERS
    assert {t["kind"] for t in teachers.values()} == {"external", "self"}
    assert "{final_answer}" in teachers["self_answer"]["prompt"]
    assert "{solution}" in teachers["self_solution"]["prompt"]
    assert config["nodes"]["strategy"] == "all" and config["sampling"]["rollouts"] >= 2
    assert config["signals"]["families"] == ["rkl", "sampled"]
    assert "{strong_solution}" in teachers["self_strong_sol"]["prompt"]
    assert "{contrastive_correct}" in teachers["self_contrast"]["prompt"]
    assert [c["model"] for c in config["contexts"]] == ["models/strong"]
    assert config["controls"]["sharpened"] and config["controls"]["softened"]
    for rel in (config["student"]["model"], config["data"]["path"],
                teachers["strong"]["model"], teachers["specialist"]["model"]):
        assert (out / rel).exists(), rel  # relative to the config's directory


def test_training_keeps_the_selected_checkpoint_and_is_deterministic() -> None:
    torch.set_num_threads(1)
    recipe = Recipe(arch=Arch(32, 1, 2, 64), steps=6, eval_every=1, batch_size=8)
    step_of = iter(range(1, 7))

    def evaluate(_model) -> dict[str, float]:
        return {"step": float(next(step_of))}

    only_step_3 = lambda m: (m["step"] == 3, 0.0, False)  # noqa: E731
    res = train(recipe, evaluate, only_step_3, seed=7, log=lambda _: None)
    assert res.step == 3
    full = train(recipe, lambda _m: {}, lambda m: (True, 0.0, False), seed=7, log=lambda _: None)
    again = train(recipe, lambda _m: {}, lambda m: (True, 0.0, False), seed=7, log=lambda _: None)
    w = {k: v for k, v in full.model.state_dict().items()}
    assert all(torch.equal(w[k], v) for k, v in again.model.state_dict().items())
    assert not all(torch.equal(w[k], v) for k, v in res.model.state_dict().items())


def test_next_token_probs_ignore_left_padding() -> None:
    """Probe readings must not depend on the batch's padding (second code path: one by one)."""
    model = build_model(Arch(32, 1, 2, 64), seed=0)
    texts = ["Q:12+34 A:4+2", "Q:1234-567 A:14-7=7;"]
    batched = next_token_probs(model, texts)
    for i, t in enumerate(texts):
        assert torch.allclose(batched[i], next_token_probs(model, [t])[0], atol=1e-5)
