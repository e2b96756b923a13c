"""Contexts the engine fills in (few-shot, contrastive, generated): what each teacher saw, and
that a teacher without a context at a rollout is NULL there, not scored on a stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny_world
from engine_helpers import assert_same_question_tables, cli, run_ok, table

from engine.inputs import contexts as ctx
from engine.inputs.config import DerivedConfig, parse_config
from engine.inputs.datasets import load_questions


def _world(root: Path, missing: str, questions: int = 3) -> Path:
    cfg = tiny_world.make_world(root, questions=questions, rollouts=3, max_new=6, n=2,
                                strategy="stride:3", verifier="even_length")
    return tiny_world.add_contexts(cfg, missing=missing, few_shot=1)


def test_contrastive_picks_the_nearest_other_rollout_of_each_kind() -> None:
    texts = ["a", "b", "c", "d"]
    got = ctx.contrastive(2, texts, [True, False, None, True])
    assert got == {"contrastive_correct": "d", "contrastive_incorrect": "b"}  # 3, then 0, 1
    assert ctx.contrastive(0, texts, [True, None, None, None]) == {
        "contrastive_correct": None, "contrastive_incorrect": None}  # never the rollout itself


def test_contrastive_after_shows_only_the_answer_part() -> None:
    d = DerivedConfig(contrastive_after="</think>", contrastive_missing="skip")
    texts = ["<think>a</think> 7", "<think>b</think> 8", "no marker"]
    got = ctx.rollout_fields(0, None, texts, [None, True, False], d)  # type: ignore[arg-type]
    assert got == {"contrastive_correct": "8", "contrastive_incorrect": "no marker"}
    assert ctx.rollout_fields(1, None, texts, [None, True, None], d) is None  # type: ignore[arg-type]


def test_few_shot_never_shows_the_question_itself_and_is_seeded(tmp_path: Path) -> None:
    qs = load_questions(tiny_world.write_questions(tmp_path / "q.jsonl", 6))
    d = DerivedConfig(few_shot=2, few_shot_template="{question}")
    for q in qs:
        shots = ctx.few_shot(q, qs, d, seed=0).split("\n\n")
        assert len(shots) == 2 and q.question not in shots and len(set(shots)) == 2
        assert ctx.few_shot(q, qs, d, seed=0) == "\n\n".join(shots)
    assert [ctx.few_shot(q, qs, d, 0) for q in qs] != [ctx.few_shot(q, qs, d, 1) for q in qs]
    with pytest.raises(ctx.ContextError, match="few_shot = 6"):
        ctx.few_shot(qs[0], qs, DerivedConfig(few_shot=6), seed=0)


def test_run_stores_what_each_teacher_saw(tmp_path: Path) -> None:
    cfg = _world(tmp_path, "skip")
    db = run_ok(cfg)
    rollouts = {(q, r): (c, correct) for q, r, c, correct in table(
        db, "SELECT question_id, rollout, completion, correct FROM rollouts")}
    questions = {q: (text, sol) for q, text, sol in table(
        db, "SELECT question_id, question, solution FROM questions")}
    prompts = {(q, r, t): p for q, r, t, p in table(
        db, "SELECT question_id, rollout, teacher, prompt FROM rollout_prompts")}
    g = 3
    assert {t for _, _, t in prompts} == {"self_contrast"}
    assert len(prompts) == len(questions) * g
    skipped = 0
    for (q, r, _), prompt in prompts.items():
        # independent recomputation: the nearest following other rollout of each verdict
        order = [(r + k) % g for k in range(1, g)]
        right = next((rollouts[(q, o)][0] for o in order if rollouts[(q, o)][1] is True), None)
        wrong = next((rollouts[(q, o)][0] for o in order if rollouts[(q, o)][1] is False), None)
        if right is None or wrong is None:
            assert prompt is None
            skipped += 1
        else:
            assert prompt == f"Right:{right} Wrong:{wrong} Q:{questions[q][0]} A:"
    # per-question teachers keep one teacher_prompts row; the rollout-dependent one has none
    tp = {(q, t): p for q, t, p in table(
        db, "SELECT question_id, teacher, prompt FROM teacher_prompts")}
    assert ("q000", "self_contrast") not in tp
    generated = {q: text for q, text in table(
        db, "SELECT question_id, text FROM contexts WHERE context = 'summary'")}
    assert set(generated) == set(questions)
    for q, (text, _) in questions.items():
        assert tp[(q, "self_summary")] == f"{generated[q]} Q:{text} A:"
        shot = tp[(q, "self_shots")].removesuffix(f" Q:{text} A:")
        others = {f"Q:{t} S:{s}" for o, (t, s) in questions.items() if o != q}
        assert shot in others  # exactly one other question's worked example
    # a skipped teacher is NULL at that rollout, with the reason, everywhere it has values
    nulls = table(db, """
        SELECT count(*), count(*) FILTER (s.null_reason = 'no_context'), count(s.cos),
               count(s.gain), count(s.label_edge)
        FROM scores s JOIN rollout_prompts rp USING (question_id, rollout, teacher)
        WHERE rp.prompt IS NULL""")[0]
    assert 0 < skipped < len(prompts)  # this seeded world has both kinds of rollout
    if skipped:
        assert nulls[0] > 0 and nulls[0] == nulls[1] and nulls[2:] == (0, 0, 0)
        assert table(db, """
            SELECT count(nt.advantage), count(n.best_teacher) FILTER (n.best_teacher = rp.teacher)
            FROM node_teacher nt JOIN rollout_prompts rp USING (question_id, rollout, teacher)
            JOIN nodes n USING (question_id, rollout, pos)
            WHERE rp.prompt IS NULL""")[0] == (0, 0)
    # where it had a context it is scored like any teacher
    assert table(db, """
        SELECT count(s.cos) > 0 FROM scores s
        JOIN rollout_prompts rp USING (question_id, rollout, teacher)
        WHERE rp.prompt IS NOT NULL""")[0][0]


def test_missing_contrast_falls_back_to_the_solution_and_contexts_are_cached(
        tmp_path: Path) -> None:
    cfg = _world(tmp_path, "solution", questions=2)
    db = run_ok(cfg)
    questions = {q: (text, sol) for q, text, sol in table(
        db, "SELECT question_id, question, solution FROM questions")}
    rollouts = {(q, r): (c, ok) for q, r, c, ok in table(
        db, "SELECT question_id, rollout, completion, correct FROM rollouts")}
    fell_back = 0
    for q, r, prompt in table(db, "SELECT question_id, rollout, prompt FROM rollout_prompts"):
        order = [(r + k) % 3 for k in range(1, 3)]
        right = next((rollouts[(q, o)][0] for o in order if rollouts[(q, o)][1] is True), None)
        wrong = next((rollouts[(q, o)][0] for o in order if rollouts[(q, o)][1] is False), "")
        fell_back += right is None
        right = questions[q][1] if right is None else right  # the reference stands in
        assert prompt == f"Right:{right} Wrong:{wrong} Q:{questions[q][0]} A:"
    assert fell_back > 0
    sols = {q: sol for q, (_, sol) in questions.items()}
    cache = cfg.parent / "run" / ctx.CACHE_FILE
    lines = [json.loads(x) for x in cache.read_text().splitlines()]
    assert {x["question_id"] for x in lines} == set(sols) and len(lines) == 2
    # a rerun over the finished run writes no text again
    code, out = cli("run", str(cfg))
    assert code == 0, out
    assert len(cache.read_text().splitlines()) == 2


def test_config_errors_name_the_fix(tmp_path: Path) -> None:
    cfg = _world(tmp_path, "never")
    text = cfg.read_text().replace('name = "summary"', 'name = "few_shot"')
    cfg.write_text(text)
    code, out = cli("validate", str(cfg))
    assert code != 0
    assert "contrastive_missing must be 'solution'" in out
    assert "reserved" in out
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace("few_shot = 1\n", "few_shot = 0\n")
                   .replace('"never"', '"skip"').replace('name = "few_shot"', 'name = "sum"'))
    assert parse_config(bad).derived.few_shot == 0  # the config parses; preflight refuses
    code, out = cli("validate", str(bad))
    assert code != 0 and "{few_shot} needs [derived] few_shot >= 1" in out


def test_an_interrupted_run_resumes_to_the_same_tables(tmp_path: Path) -> None:
    """Generated contexts come from the cache on resume, contrastive prompts from the same
    verdicts: every question table equals an uninterrupted run's."""
    a, b = _world(tmp_path / "a", "skip"), _world(tmp_path / "b", "skip")
    db_a = run_ok(a)
    run_ok(b, "--limit", "1")
    db_b = run_ok(b)
    assert_same_question_tables(db_a, db_b)
