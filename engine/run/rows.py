"""Building a question's output rows: one function per group of tables, filling column buffers
that become the Arrow tables of its part file (engine.runfile.schema declares every column)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from engine import maths
from engine.inputs import contexts
from engine.inputs.config import RunConfig
from engine.inputs.datasets import Question
from engine.models.tokens import TokenTexts
from engine.run.seed import Seeded
from engine.run.timing import StageTimes
from engine.runfile import schema
from engine.stages.context import QuestionContext
from engine.stages.continuations import ContinuationResult
from engine.stages.node_scores import NodeScores
from engine.stages.nodes import CandidateSet
from engine.stages.scoring import NodeStats, StudentPass
from engine.verify.verifiers import Verdict


@dataclass
class QuestionStats:
    """Counts and wall time of one question: its `questions` row and the progress line."""

    question_id: str
    n_rollouts: int = 0
    n_correct: int = 0
    n_nodes: int = 0
    n_continuations: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    write_seconds: float = 0.0
    """Writing its part file, after `seconds` was stored (meta timings write_seconds)."""
    error: str | None = None


@dataclass
class Rows:
    """Column buffers for one question, turned into Arrow tables at the end."""

    cols: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def add(self, table: str, **values: Any) -> None:
        t = self.cols.setdefault(table, {})
        for k, v in values.items():
            t.setdefault(k, []).append(v)

    def extend(self, table: str, **values: Any) -> None:
        t = self.cols.setdefault(table, {})
        for k, v in values.items():
            t.setdefault(k, []).extend(v.tolist() if isinstance(v, np.ndarray) else v)

    def tables(self) -> dict[str, pa.Table]:
        return {k: pa.table(v) for k, v in self.cols.items()}


def _nan_to_none(x: np.ndarray) -> list[Any]:
    return [None if (isinstance(v, float) and np.isnan(v)) else v for v in x.tolist()]


def _none_if_nan(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def prompt_rows(rows: Rows, cfg: RunConfig, q: Question, seeded: Seeded) -> None:
    """What each teacher saw (teacher_prompts, rollout_prompts) and the generated contexts."""
    for name, (text, ids) in seeded.teacher_prompts.items():
        rows.add("teacher_prompts", question_id=q.id, teacher=name, prompt=text,
                 n_prompt_tokens=len(ids))
    for (r, name), prompt in sorted(seeded.rollout_prompts.items()):
        rows.add("rollout_prompts", question_id=q.id, rollout=r, teacher=name,
                 prompt=None if prompt is None else prompt[0],
                 n_prompt_tokens=None if prompt is None else len(prompt[1]))
    for g in seeded.generated:
        rows.add("contexts", question_id=q.id, context=g.context,
                 model=g.model if g.model == "student" else cfg.portable(g.model),
                 prompt=g.prompt, text=g.text, n_tokens=g.n_tokens)


_VERDICTS = {True: "correct", False: "incorrect", None: "unverifiable"}


def rollout_row(rows: Rows, ctx: QuestionContext, seeded: Seeded, rollout: int,
                verdict: Verdict) -> None:
    response = seeded.responses[rollout]
    rows.add("rollouts", question_id=ctx.question_id, rollout=rollout, correct=verdict.correct,
             verdict=_VERDICTS[verdict.correct], verifier_detail=verdict.detail,
             n_tokens=len(response), finished=bool(response) and response[-1] in ctx.eos,
             prompt=seeded.student_text, completion=seeded.texts[rollout])


def token_rows(rows: Rows, ctx: QuestionContext, rollout: int, response: list[int],
               student: StudentPass, nodes: np.ndarray, texts: TokenTexts) -> None:
    """Every response token with the student's log p and entropy, and whether it was probed."""
    n = len(response)
    probed = np.zeros(n, dtype=bool)
    probed[nodes] = True
    token_texts = [texts.get(i) for i in response]
    rows.extend("tokens", question_id=[ctx.question_id] * n, rollout=[rollout] * n,
                pos=list(range(n)), token_id=response,
                token_text=[text for text, _ in token_texts],
                token_bytes=[raw for _, raw in token_texts],
                is_special=[i in texts.special for i in response],
                logp=student.logp_sampled, entropy=student.entropy, probed=probed)


def node_rows(rows: Rows, ctx: QuestionContext, rollout: int, response: list[int],
              node_cands: dict[int, CandidateSet], stats: NodeStats, scores: NodeScores,
              cont: ContinuationResult, texts: TokenTexts,
              param_cos: dict[tuple[int, int, int], float]) -> None:
    """nodes, candidates, candidate_teacher, node_teacher and scores of one rollout's nodes."""
    qid, names, families = ctx.question_id, ctx.teachers, ctx.signals.families
    m = len(stats.positions)
    pos = stats.positions.astype(int).tolist()
    gh = (scores.g * stats.h_cand).sum(-1)
    best = [names[i] if i >= 0 else None for i in scores.best_index]
    sampled_idx = [node_cands[t].token_ids.index(response[t]) for t in pos]
    value_change = np.array([scores.s_hat[i, j] for i, j in enumerate(sampled_idx)]) \
        - scores.v_hat
    rows.extend("nodes", question_id=[qid] * m, rollout=[rollout] * m, pos=pos,
                v_hat=_nan_to_none(scores.v_hat), value_change=_nan_to_none(value_change),
                m_s=stats.p_samp.sum(-1), n_candidates=stats.mask.sum(-1),
                n_cont=[int(scores.n[i, stats.mask[i]].max()) for i in range(m)],
                g_norm2=_nan_to_none((scores.g**2).sum(-1)), h_norm2=stats.h_norm2,
                gh=_nan_to_none(gh), g_residual_share=_nan_to_none(scores.g_share),
                n_plausible=scores.plausible.sum(-1), stakes=_nan_to_none(scores.stakes),
                stakes_lo=_nan_to_none(scores.stakes_lo),
                stakes_hi=_nan_to_none(scores.stakes_hi), decisive=scores.decisive.tolist(),
                null_reason=scores.node_reason.tolist(), best_teacher=best,
                best_prob=_nan_to_none(scores.best_prob),
                best_margin=_nan_to_none(scores.best_margin),
                best_reason=scores.best_reason.tolist())
    for i, t in enumerate(pos):
        cand_set = node_cands[t]
        for j, token in enumerate(cand_set.token_ids):
            outcome = cont.outcomes[(t, token)]
            rows.add("candidates", question_id=qid, rollout=rollout, pos=t, cand=j,
                     token_id=token, token_text=texts.get(token)[0],
                     is_sampled=(token == response[t]), sources=cand_set.sources[j],
                     plausible=bool(scores.plausible[i, j]), p=float(stats.p_samp[i, j]),
                     s=outcome.s, n=outcome.n, s_half=outcome.s_half, n_half=outcome.n_half,
                     n_unverifiable=outcome.n_unverifiable,
                     deterministic=outcome.deterministic,
                     s_hat=_none_if_nan(scores.s_hat[i, j]),
                     s_lo=_none_if_nan(scores.s_lo[i, j]), s_hi=_none_if_nan(scores.s_hi[i, j]),
                     g=_none_if_nan(scores.g[i, j]), h=float(stats.h_cand[i, j]),
                     text_success=outcome.text_success, text_failure=outcome.text_failure)
            for name in names:
                d = {f"d_{f}": (float(stats.d_cand[(name, f)][i, j]) if f in families else None)
                     for f in schema.SIGNALS}
                rows.add("candidate_teacher", question_id=qid, rollout=rollout, pos=t, cand=j,
                         teacher=name, q=float(stats.q[name][i, j]), **d)
    for ti, name in enumerate(names):
        proxies = stats.proxies[name]
        rows.extend("node_teacher", question_id=[qid] * m, rollout=[rollout] * m, pos=pos,
                    teacher=[name] * m, m_c=stats.m_c[name], advantage=scores.advantage[ti],
                    advantage_lo=_nan_to_none(scores.advantage_lo[ti]),
                    advantage_hi=_nan_to_none(scores.advantage_hi[ti]),
                    advantage_a=_nan_to_none(scores.halves["advantage_a"][ti]),
                    advantage_b=_nan_to_none(scores.halves["advantage_b"][ti]),
                    edge_a=_nan_to_none(scores.halves["edge_a"][ti]),
                    edge_b=_nan_to_none(scores.halves["edge_b"][ti]),
                    teacher_entropy=proxies["teacher_entropy"], kl_pq=proxies["kl_pq"],
                    kl_qp=proxies["kl_qp"], js=proxies["js"],
                    teachability=proxies["teachability"],
                    sampled_rank=proxies["sampled_rank"].astype(np.int64),
                    logq_sampled=proxies["logq_sampled"])
    reasons = maths.reason_names(scores.point["reason"])  # (T, F, M)
    for ti, name in enumerate(names):
        for fi, f in enumerate(families):
            point = {k: scores.point[k][ti, fi] for k in ("gain", "cos", "cos_c", "edge",
                                                          "beyond", "d_share")}
            lo = {k: _nan_to_none(scores.lo[k][ti, fi]) for k in scores.lo}
            hi = {k: _nan_to_none(scores.hi[k][ti, fi]) for k in scores.hi}
            rows.extend("scores", question_id=[qid] * m, rollout=[rollout] * m, pos=pos,
                        teacher=[name] * m, signal=[f] * m,
                        d_norm2=stats.d_norm2[(name, f)], hd=stats.hd[(name, f)],
                        gain=_nan_to_none(point["gain"]), cos=_nan_to_none(point["cos"]),
                        cos_c=_nan_to_none(point["cos_c"]),
                        cos_sharp=_nan_to_none(scores.cos_sharp[fi]),
                        edge=_nan_to_none(point["edge"]), beyond=_nan_to_none(point["beyond"]),
                        d_residual_share=_nan_to_none(point["d_share"]),
                        cos_lo=lo["cos"], cos_hi=hi["cos"], edge_lo=lo["edge"],
                        edge_hi=hi["edge"], beyond_lo=lo["beyond"], beyond_hi=hi["beyond"],
                        gain_lo=lo["gain"], gain_hi=hi["gain"],
                        label=list(scores.labels["cos"][ti, fi]),
                        label_edge=list(scores.labels["edge"][ti, fi]),
                        label_beyond=list(scores.labels["beyond"][ti, fi]),
                        null_reason=list(reasons[ti, fi]),
                        param_cos=[param_cos.get((ti, fi, i)) for i in range(m)])


_KEEP = frozenset({"question_id", "rollout", "pos", "cand", "teacher", "signal"})


def null_skipped(rows: Rows, rollout: int, skipped: set[str]) -> None:
    """NULL every value of teachers without a context at this rollout, reason no_context: they
    saw no prompt of their kind there, so nothing about them is measured."""
    if not skipped:
        return
    for table in ("scores", "node_teacher", "candidate_teacher"):
        cols = rows.cols.get(table, {})
        hit = [i for i, (r, t) in enumerate(zip(cols["rollout"], cols["teacher"], strict=True))
               if r == rollout and t in skipped]
        for name, values in cols.items():
            if name in _KEEP:
                continue
            fill = contexts.NO_CONTEXT if name == "null_reason" else None
            for i in hit:
                values[i] = fill


def question_row(rows: Rows, q: Question, stats: QuestionStats) -> None:
    rows.add("questions", question_id=q.id, idx=q.idx, family=q.family, question=q.question,
             solution=q.solution, final_answer=q.final_answer, status="ok", error=None,
             n_rollouts=stats.n_rollouts, n_correct=stats.n_correct, n_nodes=stats.n_nodes,
             n_continuations=stats.n_continuations, generated_tokens=stats.generated_tokens,
             seconds=stats.seconds)


def stage_rows(rows: Rows, q: Question, times: StageTimes) -> None:
    """One question_stages row per stage, in pipeline order (the part sorts them by key)."""
    for stage, seconds in times.seconds.items():
        rows.add("question_stages", question_id=q.id, stage=stage, seconds=seconds)


def failed_question_tables(q: Question, error: str, seconds: float) -> dict[str, pa.Table]:
    """A failed question's part: its `questions` row alone, status failed, with the error."""
    return {"questions": pa.table({
        "question_id": [q.id], "idx": [q.idx], "family": [q.family], "question": [q.question],
        "solution": [q.solution], "final_answer": [q.final_answer], "status": ["failed"],
        "error": [error], "n_rollouts": [0], "n_correct": [0], "n_nodes": [0],
        "n_continuations": [0], "generated_tokens": [0], "seconds": [seconds]})}
