"""Orchestration: one question at a time from prompts to an immutable part file.

The question is the unit of work and of failure. `process_question` is a pure function of the
loaded world and the question (randomness is keyed, not global), so resuming, sharding or
re-running one question reproduces its rows. Its steps, each timed as a stage
(`question_stages`):

    seed_question        sampling, verification, scoring (trunks)   engine.run.seed
    then per rollout:
      plan_nodes         scoring (student pass, candidates, nodes)  engine.run.plan
      run_continuations  continuations (their verdicts: verification) engine.stages
      score_nodes        scoring (node pass, scores, param check)   engine.stages
      node_rows          writing                                    engine.run.rows
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from engine.inputs.datasets import Question
from engine.run.plan import plan_nodes
from engine.run.rows import (
    QuestionStats,
    Rows,
    failed_question_tables,
    node_rows,
    null_skipped,
    prompt_rows,
    question_row,
    rollout_row,
    stage_rows,
    token_rows,
)
from engine.run.seed import Seeded, batch_trunks, seed_question
from engine.run.world import World, question_context
from engine.runfile import store
from engine.stages.context import QuestionContext
from engine.stages.continuations import run_continuations
from engine.stages.node_scores import OutcomeCounts, score_nodes
from engine.stages.param_check import param_cosines

ProgressFn = Callable[[QuestionStats, int, int], None]
"""Called after each question's part is written: (its stats, questions done, questions to do)."""

QUESTION_ERRORS = (torch.cuda.OutOfMemoryError, RuntimeError, ValueError, KeyError, IndexError,
                   OSError)
"""What fails one question (recorded, status failed) rather than the run."""


def process_question(world: World, q: Question, seeded: Seeded | None = None
                     ) -> tuple[dict[str, pa.Table], QuestionStats]:
    """Everything for one question: rollouts, scoring, continuations, scores, as Arrow tables.

    `seeded` is the question already seeded in a batch (`run_questions` with a residency
    limit); its seeding time then counts toward this question's seconds too.
    """
    t0 = time.perf_counter()
    seeded_before = 0.0 if seeded is None else seeded.times.total()
    seeded = seeded or seed_question(world, q)
    times = seeded.times

    def judge(completions: list[str]) -> list[bool | None]:
        with times.stage("verification"):
            return [v.correct for v in world.verifier.verify_many(completions, q)]

    ctx = question_context(world, q, seeded.student_ids, judge)
    stats = QuestionStats(q.id, n_rollouts=len(seeded.responses),
                          generated_tokens=sum(len(r) for r in seeded.responses))
    rows = Rows()
    with times.stage("writing"):
        prompt_rows(rows, world.cfg, q, seeded)
    for rollout, (response, verdict) in enumerate(zip(seeded.responses, seeded.verdicts,
                                                      strict=True)):
        stats.n_correct += verdict.correct is True
        with times.stage("writing"):
            rollout_row(rows, ctx, seeded, rollout, verdict)
        if response:
            _process_rollout(world, ctx, seeded, rollout, rows, stats)

    stats.seconds = time.perf_counter() - t0 + seeded_before
    with times.stage("writing"):
        question_row(rows, q, stats)
    stage_rows(rows, q, times)
    return rows.tables(), stats


def _process_rollout(world: World, ctx: QuestionContext, seeded: Seeded, rollout: int,
                     rows: Rows, stats: QuestionStats) -> None:
    """One rollout's nodes: plan, continue, score, and its rows."""
    times = seeded.times
    response = seeded.responses[rollout]
    with times.stage("scoring"):
        plan = plan_nodes(ctx, seeded, rollout)
    with times.stage("writing"):
        token_rows(rows, ctx, rollout, response, plan.student, plan.nodes, world.texts)
    if len(plan.nodes) == 0:
        return
    node_cands = plan.node_cands()
    with times.stage("continuations"), world.pool.use(world.student):
        cont = run_continuations(ctx, response, node_cands, rollout=rollout)
    stats.n_continuations += cont.n_continuations
    stats.generated_tokens += cont.generated_tokens
    stats.n_nodes += len(plan.nodes)

    with times.stage("scoring"):
        node_stats = plan.scorer.node_pass(plan.nodes,
                                           [c.token_ids for c in node_cands.values()])
        counts = OutcomeCounts.of(cont, node_stats, node_cands)
        # a teacher skipped at this rollout is kept out of C+ and the best teacher like a control
        controls = [v.cfg.is_control for v in seeded.views[rollout]]
        scores = score_nodes(ctx, node_stats, counts, np.asarray(response)[plan.nodes],
                             controls, rollout=rollout)
        param_cos = param_cosines(ctx, plan.scorer, response, node_stats, scores) \
            if ctx.param_check.nodes else {}
    with times.stage("writing"):
        node_rows(rows, ctx, rollout, response, node_cands, node_stats, scores, cont,
                  world.texts, param_cos)
        null_skipped(rows, rollout, seeded.skipped(rollout))


def run_questions(world: World, questions: list[Question], run_dir: Path,
                  on_done: ProgressFn | None = None) -> list[QuestionStats]:
    """Process every question not already finished; a failure is recorded and the run goes on."""
    done = store.finished_parts(run_dir)
    world.writer.attach(run_dir)
    todo = [q for q in questions if done.get(q.id) != "ok"]
    results: list[QuestionStats] = []
    size = world.cfg.memory.question_batch if world.pool.limit else 1
    for start in range(0, len(todo), size):
        batch = todo[start : start + size]
        seeded: dict[str, Seeded] = seed_batch(world, batch) if size > 1 else {}
        for q in batch:
            t0 = time.perf_counter()
            try:
                tables, stats = process_question(world, q, seeded.get(q.id))
            except QUESTION_ERRORS as e:
                if isinstance(e, torch.cuda.OutOfMemoryError) and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                err = f"{type(e).__name__}: {e}"
                seconds = time.perf_counter() - t0
                tables = failed_question_tables(q, err + "\n" + traceback.format_exc(limit=6),
                                                seconds)
                stats = QuestionStats(q.id, seconds=seconds, error=err)
            t_write = time.perf_counter()
            store.write_part(run_dir, q.idx, q.id, tables)
            stats.write_seconds = time.perf_counter() - t_write
            results.append(stats)
            if on_done:
                on_done(stats, len(results), len(todo))
    return results


def seed_batch(world: World, batch: list[Question]) -> dict[str, Seeded]:
    """Seed a batch, then visit each model once for all its trunks. A question that fails here
    is simply left out: it seeds itself on its own path, where a failure is recorded."""
    seeded: dict[str, Seeded] = {}
    for q in batch:
        try:
            seeded[q.id] = seed_question(world, q, trunks=False)
        except QUESTION_ERRORS:
            continue
    try:
        batch_trunks(world, list(seeded.values()))
    except QUESTION_ERRORS:
        return {}
    return seeded
