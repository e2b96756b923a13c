"""Planning: which nodes of a rollout get continuations (`plan_nodes`, part of every run), and
what a whole question will cost before paying for it (`plan_question`, `opd-engine plan`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engine.inputs.datasets import Question
from engine.run.seed import Seeded, seed_question
from engine.run.world import World, question_context
from engine.stages.context import QuestionContext
from engine.stages.nodes import (
    CandidateSet,
    candidate_set,
    is_deterministic,
    node_costs,
    select_nodes,
)
from engine.stages.scoring import Scorer, StudentPass


@dataclass
class NodePlan:
    """One rollout's scorer, student pass, candidate sets at every position and chosen nodes."""

    scorer: Scorer
    student: StudentPass
    cands: list[CandidateSet]
    """Candidate set at every response position."""
    nodes: np.ndarray
    """Positions selected for continuations, sorted."""

    def node_cands(self) -> dict[int, CandidateSet]:
        """Candidate sets of the selected nodes only, in node order."""
        return {int(pos): self.cands[pos] for pos in self.nodes}


def plan_nodes(ctx: QuestionContext, seeded: Seeded, rollout: int) -> NodePlan:
    """Candidate sets for every position, then the nodes the strategy and budget select."""
    response = seeded.responses[rollout]
    scorer = Scorer.for_rollout(ctx, seeded.sources, seeded.hidden[rollout],
                                seeded.views[rollout], response)
    student = scorer.student_pass()
    cands = [candidate_set(response[t], student.student_top[t].tolist(),
                           {name: top[t].tolist() for name, top in student.teacher_top.items()},
                           ctx.candidates) for t in range(len(response))]
    if ctx.candidates.plausibility > 0:
        cands = filter_plausible(ctx, scorer, response, cands)
    cost = node_costs(cands, ctx.continuations.n, set(ctx.eos), ctx.sampling.max_new_tokens)
    budget = ctx.nodes.budget_tokens / ctx.sampling.rollouts if ctx.nodes.budget_tokens else 0
    return NodePlan(scorer, student, cands, select_nodes(ctx.nodes, student.entropy, cost,
                                                         budget))


def filter_plausible(ctx: QuestionContext, scorer: Scorer, response: list[int],
                     cands: list[CandidateSet]) -> list[CandidateSet]:
    """Re-derive candidate sets with p and q at the candidates known (plausibility filter)."""
    stats = scorer.node_pass(np.arange(len(response)), [c.token_ids for c in cands])
    controls = {view.cfg.name for view in scorer.views if view.cfg.is_control}
    out = []
    for t, c in enumerate(cands):
        ids = c.token_ids
        p = {a: float(stats.p_samp[t, j]) for j, a in enumerate(ids)}
        q = {name: {a: float(v[t, j]) for j, a in enumerate(ids)}
             for name, v in stats.q.items() if name not in controls}
        srcs = {a: src.split(",") for a, src in zip(ids, c.sources, strict=True)}
        out.append(candidate_set(response[t], [a for a in ids if "student" in srcs[a]],
                                 {name: [a for a in ids if name in srcs[a]] for name in q},
                                 ctx.candidates, p, q))
    return out


@dataclass
class QuestionPlan:
    """What a question will cost: exact nodes and continuations, estimated generated tokens."""

    question_id: str
    rollout_tokens: int
    nodes: int
    continuations: int
    est_tokens: float  # continuation tokens, if each runs as long as the rollout's remainder
    seconds: float


def plan_question(world: World, q: Question) -> QuestionPlan:
    """Seed and select nodes exactly as `run` would (same keys, same rollouts), without the
    continuations: what the budget will buy, before paying for it."""
    t0 = time.perf_counter()
    seeded = seed_question(world, q)
    ctx = question_context(world, q, seeded.student_ids)
    nodes = conts = 0
    est = 0.0
    n_cont, max_new = ctx.continuations.n, ctx.sampling.max_new_tokens
    eos = set(ctx.eos)
    for r, response in enumerate(seeded.responses):
        if not response:
            continue
        plan = plan_nodes(ctx, seeded, r)
        n = len(response)
        for t in plan.nodes:
            nodes += 1
            for a in plan.cands[t].token_ids:
                fixed = is_deterministic(int(t), a, eos, max_new)  # judged once
                conts += 1 if fixed else n_cont
                est += 0 if fixed else n_cont * (n - t)
    return QuestionPlan(q.id, sum(len(r) for r in seeded.responses), nodes, conts, est,
                        time.perf_counter() - t0)
