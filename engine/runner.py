"""Orchestration: one question at a time from prompts to an immutable part file.

The question is the unit of work and of failure. `process_question` is a pure function of the
loaded world and the question (randomness is keyed, not global), so resuming, sharding or
re-running one question reproduces its rows.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from engine import __version__, maths
from engine.inputs import contexts as ctx
from engine.inputs.config import RunConfig, TeacherConfig
from engine.inputs.datasets import Question, load_questions
from engine.inputs.prompts import render_prompt
from engine.models.generation import Sampler, sample_rollouts
from engine.models.loading import (
    LoadedModel,
    ResidencyPool,
    eos_ids,
    load_model,
    resolve_device,
    resolve_dtype,
    tune_allocator,
)
from engine.models.tokens import TokenTexts
from engine.models.vocab import check_compatible
from engine.rng import sequence_key
from engine.runfile import schema, store
from engine.stages.continuations import ContinuationResult, run_continuations
from engine.stages.node_scores import rank_signal, score_nodes
from engine.stages.nodes import candidate_set, is_deterministic, node_costs, select_nodes
from engine.stages.scoring import Scorer, Source, TeacherView, response_hidden
from engine.verify.verifiers import Verifier, make_verifier


@dataclass
class World:
    """Everything loaded once per run: models, verifier, sampler and teacher views."""

    cfg: RunConfig
    student: LoadedModel
    externals: dict[str, LoadedModel]  # model path -> loaded model
    verifier: Verifier
    sampler: Sampler
    eos: list[int]
    texts: TokenTexts
    teachers: tuple[TeacherConfig, ...]
    pool: ResidencyPool
    writer: ctx.ContextWriter
    dataset: list[Question] = field(default_factory=list)
    """Every question of the data file: the pool few-shot examples come from."""

    def close(self) -> None:
        self.verifier.close()


def load_world(cfg: RunConfig) -> World:
    tune_allocator()
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    student = load_model(cfg.student.model, device=device, dtype=dtype, name="student")
    externals: dict[str, LoadedModel] = {}
    for t in cfg.all_teachers:
        if t.model and t.model not in externals:
            lm = load_model(t.model, device=device, dtype=dtype, name=t.name)
            check_compatible(student.tokenizer, lm.tokenizer, student_name="student",
                             teacher_name=t.name)
            externals[t.model] = lm
    verifier = make_verifier(cfg.verifier.kind, callable_spec=cfg.verifier.callable,
                             timeout_s=cfg.verifier.timeout_s,
                             answer_after=cfg.verifier.answer_after)
    s = cfg.sampling
    if cfg.param_check.nodes:
        from engine.stages.param_check import select_parameters

        select_parameters(student.model, cfg.param_check.groups)  # fail before any work
    writers: dict[str, LoadedModel] = {"student": student}
    for c in cfg.contexts:  # a context writer need not share the student's vocabulary
        if c.model not in writers:
            writers[c.model] = externals.get(c.model) or load_model(
                c.model, device=device, dtype=dtype, name=f"context {c.name}")
    pool = ResidencyPool(cfg.memory.max_resident_models)
    if pool.limit:  # start with only the student resident
        for lm in {id(m): m for m in (*externals.values(), *writers.values())}.values():
            if lm is not student:
                lm.offload()
    dataset = (load_questions(Path(cfg.data.path), preset=cfg.data.preset,
                              fields=cfg.data.fields) if cfg.derived.few_shot else [])
    return World(cfg, student, externals, verifier, Sampler(s.temperature, s.top_p, s.top_k),
                 eos_ids(student), TokenTexts(student.tokenizer), cfg.all_teachers, pool,
                 ctx.ContextWriter(cfg.contexts, writers, pool), dataset)


@dataclass
class QuestionStats:
    question_id: str
    n_rollouts: int = 0
    n_correct: int = 0
    n_nodes: int = 0
    n_continuations: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class _Rows:
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


def _prompt(world: World, t: TeacherConfig | None, q: Question) -> tuple[str, list[int]]:
    st = world.cfg.student
    lm = world.student if t is None or not t.model else world.externals[t.model]
    template = st.prompt if t is None else t.prompt
    return render_prompt(lm.tokenizer, template, q, chat_template=st.chat_template,
                         system_prompt=st.system_prompt,
                         chat_template_kwargs=st.chat_template_kwargs)


def render_all_prompts(world: World, questions: list[Question]) -> None:
    """Render every model's prompt for every question (chat templates included) before anything
    is written, so a template that fails on question 900 fails the run at its start. Texts the
    run writes later (generated contexts, other rollouts) are stood in for here."""
    stand_in = {name: "(context)" for name in (*ctx.PER_ROLLOUT, *(c.name for c in
                                                                  world.cfg.contexts))}
    for q in questions:
        qf = ctx.with_fields(q, {**stand_in, **_derived_fields(world, q)})
        _prompt(world, None, qf)
        for t in world.teachers:
            _prompt(world, t, qf)


def _derived_fields(world: World, q: Question) -> dict[str, str]:
    """Per-question derived placeholders (few-shot examples)."""
    d = world.cfg.derived
    return {"few_shot": ctx.few_shot(q, world.dataset, d, world.cfg.seed)} if d.few_shot else {}


@dataclass
class Seeded:
    """A question after its rollouts: prompts, scoring sources and hidden states."""

    student_text: str
    student_ids: list[int]
    teacher_prompts: dict[str, tuple[str, list[int]]]
    """Prompts of the teachers that see the same context at every rollout."""
    sources: list[Source]
    views: list[list[TeacherView]]
    """Per rollout, one view per teacher (a rollout-dependent teacher reads its own source)."""
    responses: list[list[int]]
    texts: list[str]
    verdicts: list[Any]
    hidden: list[list[Any]]
    rollout_prompts: dict[tuple[int, str], tuple[str, list[int]] | None] = field(
        default_factory=dict)
    """(rollout, teacher) -> prompt of a rollout-dependent teacher; None: skipped there."""
    generated: list[ctx.Generated] = field(default_factory=list)

    def skipped(self, r: int) -> set[str]:
        """Teachers without a context at rollout r (scores NULL, reason no_context)."""
        return {name for (rr, name), p in self.rollout_prompts.items() if rr == r and p is None}


def seed_question(world: World, q: Question, *, trunks: bool = True) -> Seeded:
    """Render every prompt, sample the G rollouts, verify them, run every model's trunk
    (`trunks=False` leaves that to `batch_trunks`, which visits each model once per batch)."""
    cfg = world.cfg
    fields = _derived_fields(world, q)
    generated = world.writer.texts(q, fields)
    qf = ctx.with_fields(q, {**fields, **{g.context: g.text for g in generated}})
    student_text, student_ids = _prompt(world, None, qf)
    per_rollout = [t for t in world.teachers if ctx.uses_rollout(t.prompt)]
    teacher_prompts = {t.name: _prompt(world, t, qf) for t in world.teachers
                       if t not in per_rollout}

    # sources: (model, prompt[, rollout]) whose hidden states are computed once per rollout
    sources: list[Source] = [Source(world.student, student_ids)]
    src_index: dict[tuple[str, str, int | None], int] = {("", student_text, None): 0}

    def source(t: TeacherConfig, prompt: tuple[str, list[int]], r: int | None) -> int:
        key = (t.model, prompt[0], r)
        if key not in src_index:
            lm = world.externals[t.model] if t.model else world.student
            src_index[key] = len(sources)
            sources.append(Source(lm, prompt[1], r))
        return src_index[key]

    shared = {t.name: TeacherView(t, source(t, teacher_prompts[t.name], None), t.temperature)
              for t in world.teachers if t not in per_rollout}
    keys = np.array([sequence_key(cfg.seed, "rollout", q.id, r)
                     for r in range(cfg.sampling.rollouts)], dtype=np.uint64)
    with world.pool.use(world.student):
        responses = sample_rollouts(world.student, world.sampler, student_ids, keys,
                                    cfg.sampling.max_new_tokens, world.eos)
    texts = world.student.tokenizer.batch_decode(responses, skip_special_tokens=True)
    verdicts = world.verifier.verify_many(texts, q)

    # rollout-dependent teachers (contrastive examples) once the verdicts are known
    rollout_prompts: dict[tuple[int, str], tuple[str, list[int]] | None] = {}
    views: list[list[TeacherView]] = []
    correct = [v.correct for v in verdicts]
    for r in range(len(responses)):
        extra = ctx.rollout_fields(r, q, texts, correct, cfg.derived)
        row = []
        for t in world.teachers:
            if t not in per_rollout:
                row.append(shared[t.name])
            elif extra is None:  # read as a control would be, then NULLed: see _null_skipped
                rollout_prompts[(r, t.name)] = None
                row.append(TeacherView(dataclasses.replace(t, is_control=True), 0, 1.0))
            else:
                prompt = _prompt(world, t, ctx.with_fields(qf, extra))
                rollout_prompts[(r, t.name)] = prompt
                row.append(TeacherView(t, source(t, prompt, r), t.temperature))
        views.append(row)
    hidden = response_hidden(world.pool, sources, responses) if trunks else []
    return Seeded(student_text, student_ids, teacher_prompts, sources, views, responses, texts,
                  verdicts, hidden, rollout_prompts, generated)


def batch_trunks(world: World, batch: list[Seeded]) -> None:
    """Hidden states for a batch of seeded questions, bringing each model in once.

    With `max_resident_models = 1` this turns (teachers + 1) swaps per question into
    (teachers + 1) per batch of questions.
    """
    models: dict[int, LoadedModel] = {}
    for s in batch:
        s.hidden = [[None] * len(s.sources) for _ in s.responses]
        for src in s.sources:
            models.setdefault(id(src.lm), src.lm)
    for lm in models.values():
        with world.pool.use(lm):
            for s in batch:
                idxs = [i for i, src in enumerate(s.sources) if src.lm is lm]
                part = response_hidden(world.pool, [s.sources[i] for i in idxs], s.responses)
                for r in range(len(s.responses)):
                    for j, i in enumerate(idxs):
                        s.hidden[r][i] = part[r][j]


@dataclass
class NodePlan:
    """One rollout's scorer, student pass, candidate sets at every position and chosen nodes."""

    scorer: Scorer
    student: Any
    cands: list[Any]
    nodes: np.ndarray


def plan_nodes(world: World, seeded: Seeded, r: int) -> NodePlan:
    """Candidate sets for every position, then the nodes the strategy and budget select."""
    cfg = world.cfg
    resp = seeded.responses[r]
    scorer = Scorer(world.student, seeded.sources, seeded.hidden[r], seeded.views[r], cfg.sampling,
                    cfg.signals, cfg.candidates, cfg.memory.score_chunk, resp,
                    cfg.controls.sharpened_temperature)
    sp = scorer.student_pass()
    n = len(resp)
    cands = [candidate_set(resp[t], sp.student_top[t].tolist(),
                           {k: v[t].tolist() for k, v in sp.teacher_top.items()},
                           cfg.candidates) for t in range(n)]
    if cfg.candidates.plausibility > 0:
        cands = _filter_plausible(scorer, resp, cands, cfg)
    cost = node_costs(cands, cfg.continuations.n, set(world.eos), cfg.sampling.max_new_tokens)
    g = cfg.sampling.rollouts
    budget = cfg.nodes.budget_tokens / g if cfg.nodes.budget_tokens else 0
    return NodePlan(scorer, sp, cands, select_nodes(cfg.nodes, sp.entropy, cost, budget))


def process_question(world: World, q: Question, seeded: Seeded | None = None
                     ) -> tuple[dict[str, pa.Table], QuestionStats]:
    """Everything for one question: rollouts, scoring, continuations, scores, as Arrow tables."""
    cfg = world.cfg
    t0 = time.perf_counter()
    stats = QuestionStats(q.id)
    rows = _Rows()
    seeded = seeded or seed_question(world, q)
    student_ids = seeded.student_ids
    for name, (text, ids) in seeded.teacher_prompts.items():
        rows.add("teacher_prompts", question_id=q.id, teacher=name, prompt=text,
                 n_prompt_tokens=len(ids))
    for (r, name), prompt in sorted(seeded.rollout_prompts.items()):
        rows.add("rollout_prompts", question_id=q.id, rollout=r, teacher=name,
                 prompt=None if prompt is None else prompt[0],
                 n_prompt_tokens=None if prompt is None else len(prompt[1]))
    for g in seeded.generated:
        rows.add("contexts", question_id=q.id, context=g.context,
                 model=g.model if g.model == "student" else world.cfg.portable(g.model),
                 prompt=g.prompt, text=g.text, n_tokens=g.n_tokens)
    names = [t.name for t in world.teachers]
    stats.n_rollouts = len(seeded.responses)
    stats.generated_tokens += sum(len(r) for r in seeded.responses)
    eos = set(world.eos)

    for r, (resp, verdict) in enumerate(zip(seeded.responses, seeded.verdicts, strict=True)):
        correct = verdict.correct
        stats.n_correct += correct is True
        rows.add("rollouts", question_id=q.id, rollout=r, correct=correct,
                 verdict={True: "correct", False: "incorrect", None: "unverifiable"}[correct],
                 verifier_detail=verdict.detail, n_tokens=len(resp),
                 finished=bool(resp) and resp[-1] in eos, prompt=seeded.student_text,
                 completion=seeded.texts[r])
        if not resp:
            continue
        plan = plan_nodes(world, seeded, r)
        scorer, sp, cands, nodes = plan.scorer, plan.student, plan.cands, plan.nodes
        n = len(resp)
        probed = np.zeros(n, dtype=bool)
        probed[nodes] = True
        tt = [world.texts.get(i) for i in resp]
        rows.extend("tokens", question_id=[q.id] * n, rollout=[r] * n, pos=list(range(n)),
                    token_id=resp, token_text=[a for a, _ in tt], token_bytes=[b for _, b in tt],
                    is_special=[i in world.texts.special for i in resp],
                    logp=sp.logp_sampled, entropy=sp.entropy, probed=probed)
        if len(nodes) == 0:
            continue
        node_cands = {int(t): cands[t] for t in nodes}

        def judge(completions: list[str]) -> list[bool | None]:
            return [v.correct for v in world.verifier.verify_many(completions, q)]

        with world.pool.use(world.student):
            cont = run_continuations(
                world.student, world.sampler, student_ids, resp, [int(t) for t in nodes],
                node_cands, n_cont=cfg.continuations.n,
                max_new_tokens=cfg.sampling.max_new_tokens, eos=world.eos, seed=cfg.seed,
                question_id=q.id, rollout=r, batch_size=cfg.continuations.batch_size,
                judge=judge)
        stats.n_continuations += cont.n_continuations
        stats.generated_tokens += cont.generated_tokens
        stats.n_nodes += len(nodes)

        ns = scorer.node_pass(nodes, [node_cands[int(t)].token_ids for t in nodes])
        counts = outcome_arrays(ns.cand_ids.shape, nodes, node_cands, cont)
        # a teacher skipped at this rollout is kept out of C+ and the best teacher like a control
        controls = [v.cfg.is_control for v in seeded.views[r]]
        sc = score_nodes(ns, *counts, np.asarray(resp)[nodes], names, controls,
                         cfg.signals.families, draws=cfg.bootstrap_draws, seed=cfg.seed,
                         question_id=q.id, rollout=r, temperature=cfg.sampling.temperature,
                         rules=cfg.scores)
        pcos = _param_cosines(world, seeded, scorer, resp, nodes, ns, sc) \
            if cfg.param_check.nodes else {}
        _emit_node_rows(rows, q.id, r, resp, nodes, node_cands, ns, sc, cont, names,
                        cfg.signals.families, world.texts, pcos)
        _null_skipped(rows, r, seeded.skipped(r))

    stats.seconds = time.perf_counter() - t0
    rows.add("questions", question_id=q.id, idx=q.idx, family=q.family, question=q.question,
             solution=q.solution, final_answer=q.final_answer, status="ok", error=None,
             n_rollouts=stats.n_rollouts, n_correct=stats.n_correct, n_nodes=stats.n_nodes,
             n_continuations=stats.n_continuations, generated_tokens=stats.generated_tokens,
             seconds=stats.seconds)
    return rows.tables(), stats


def outcome_arrays(shape: tuple[int, int], nodes: np.ndarray, node_cands: dict,
                   cont: ContinuationResult) -> tuple[np.ndarray, ...]:
    """(s, n, s_half, n_half, deterministic), each (M, K) in the node pass's candidate order;
    padded slots are 0 / False."""
    s, n, s_half, n_half = (np.zeros(shape) for _ in range(4))
    det = np.zeros(shape, dtype=bool)
    for i, t in enumerate(nodes):
        for j, a in enumerate(node_cands[int(t)].token_ids):
            o = cont.outcomes[(int(t), a)]
            s[i, j], n[i, j], s_half[i, j], n_half[i, j] = o.s, o.n, o.s_half, o.n_half
            det[i, j] = o.deterministic
    return s, n, s_half, n_half, det


def _filter_plausible(scorer: Scorer, resp: list[int], cands: list, cfg: RunConfig) -> list:
    """Re-derive candidate sets with p and q at the candidates known (plausibility filter)."""
    ns = scorer.node_pass(np.arange(len(resp)), [c.token_ids for c in cands])
    out = []
    for t, c in enumerate(cands):
        ids = c.token_ids
        p = {a: float(ns.p_samp[t, j]) for j, a in enumerate(ids)}
        q = {name: {a: float(v[t, j]) for j, a in enumerate(ids)} for name, v in ns.q.items()
             if not any(view.cfg.name == name and view.cfg.is_control for view in scorer.views)}
        srcs = {a: src.split(",") for a, src in zip(ids, c.sources, strict=True)}
        kept = candidate_set(resp[t], [a for a in ids if "student" in srcs[a]],
                             {name: [a for a in ids if name in srcs[a]] for name in q},
                             cfg.candidates, p, q)
        out.append(kept)
    return out


def _param_cosines(world: World, seeded: Seeded, scorer: Scorer, resp: list[int],
                   nodes: np.ndarray, ns: Any, sc: Any) -> dict[tuple[int, int, int], float]:
    """cos(J^T g, J^T d) at the rollout's highest-|g| nodes: {(teacher, signal, node): cos}."""
    from engine.stages.param_check import cosines, pick_nodes, pullback

    cfg = world.cfg
    out: dict[tuple[int, int, int], float] = {}
    fams = cfg.signals.families
    for i in pick_nodes((sc.g**2).sum(-1).tolist(), cfg.param_check.nodes):
        t = int(nodes[i])
        rows_t = torch.tensor([t], device=world.student.device)
        _, logp_train = scorer._student_logps(rows_t)
        g_full = torch.zeros(world.student.vocab_size, dtype=torch.float64)
        ids = ns.cand_ids[i][ns.mask[i]]
        g_full[torch.as_tensor(ids)] = torch.as_tensor(sc.g[i][ns.mask[i]])
        dirs = {"g": g_full}
        y = torch.tensor([resp[t]], device=world.student.device)
        for ti, view in enumerate(scorer.views):
            logq = scorer._teacher_logq(view, rows_t)
            for fi, f in enumerate(fams):
                d = maths.direction(f, logp_train, logq, y, cfg.signals.jsd_beta)[0]
                dirs[f"{ti}/{fi}"] = d.cpu()
        with world.pool.use(world.student):
            pulled = pullback(world.student, seeded.student_ids + resp[:t], dirs,
                              cfg.param_check.groups)
        ideal = pulled.pop("g")
        for key, c in cosines(ideal, pulled).items():
            if c is not None:
                ti, fi = (int(x) for x in key.split("/"))
                out[(ti, fi, i)] = c
    return out


_KEEP = frozenset({"question_id", "rollout", "pos", "cand", "teacher", "signal"})


def _null_skipped(rows: _Rows, r: int, skipped: set[str]) -> None:
    """NULL every value of teachers without a context at rollout r, reason no_context: they
    saw no prompt of their kind there, so nothing about them is measured."""
    if not skipped:
        return
    for table in ("scores", "node_teacher", "candidate_teacher"):
        cols = rows.cols.get(table, {})
        hit = [i for i, (rr, t) in enumerate(zip(cols["rollout"], cols["teacher"], strict=True))
               if rr == r and t in skipped]
        for name, values in cols.items():
            if name in _KEEP:
                continue
            fill = ctx.NO_CONTEXT if name == "null_reason" else None
            for i in hit:
                values[i] = fill


def _emit_node_rows(rows: _Rows, qid: str, r: int, resp: list[int], nodes: np.ndarray,
                    node_cands: dict, ns: Any, sc: Any, cont: Any, names: list[str],
                    families: tuple[str, ...], texts: TokenTexts,
                    param_cos: dict[tuple[int, int, int], float]) -> None:
    m = len(nodes)
    pos = nodes.astype(int).tolist()
    gh = (sc.g * ns.h_cand).sum(-1)
    best = [names[i] if i >= 0 else None for i in sc.best_index]
    sampled_idx = [node_cands[t].token_ids.index(resp[t]) for t in pos]
    rows.extend("nodes", question_id=[qid] * m, rollout=[r] * m, pos=pos,
                v_hat=_nan_to_none(sc.v_hat),
                value_change=_nan_to_none(np.array([sc.s_hat[i, j] for i, j in
                                                    enumerate(sampled_idx)]) - sc.v_hat),
                m_s=ns.p_samp.sum(-1), n_candidates=ns.mask.sum(-1),
                n_cont=[int(sc.n[i, ns.mask[i]].max()) for i in range(m)],
                g_norm2=_nan_to_none((sc.g**2).sum(-1)), h_norm2=ns.h_norm2,
                gh=_nan_to_none(gh), g_residual_share=_nan_to_none(sc.g_share),
                n_plausible=sc.plausible.sum(-1), stakes=_nan_to_none(sc.stakes),
                stakes_lo=_nan_to_none(sc.stakes_lo), stakes_hi=_nan_to_none(sc.stakes_hi),
                decisive=sc.decisive.tolist(), null_reason=sc.node_reason.tolist(),
                best_teacher=best, best_prob=_nan_to_none(sc.best_prob),
                best_margin=_nan_to_none(sc.best_margin), best_reason=sc.best_reason.tolist())
    # candidates and candidate_teacher
    for i, t in enumerate(pos):
        cs = node_cands[t]
        for j, a in enumerate(cs.token_ids):
            o = cont.outcomes[(t, a)]
            rows.add("candidates", question_id=qid, rollout=r, pos=t, cand=j, token_id=a,
                     token_text=texts.get(a)[0], is_sampled=(a == resp[t]),
                     sources=cs.sources[j], plausible=bool(sc.plausible[i, j]),
                     p=float(ns.p_samp[i, j]), s=o.s, n=o.n,
                     s_half=o.s_half, n_half=o.n_half, n_unverifiable=o.n_unverifiable,
                     deterministic=o.deterministic, s_hat=_none_if_nan(sc.s_hat[i, j]),
                     s_lo=_none_if_nan(sc.s_lo[i, j]), s_hi=_none_if_nan(sc.s_hi[i, j]),
                     g=_none_if_nan(sc.g[i, j]), h=float(ns.h_cand[i, j]),
                     text_success=o.text_success, text_failure=o.text_failure)
            for name in names:
                d = {f"d_{f}": (float(ns.d_cand[(name, f)][i, j]) if f in families else None)
                     for f in schema.SIGNALS}
                rows.add("candidate_teacher", question_id=qid, rollout=r, pos=t, cand=j,
                         teacher=name, q=float(ns.q[name][i, j]), **d)
    # node_teacher
    for ti, name in enumerate(names):
        px = ns.proxies[name]
        rows.extend("node_teacher", question_id=[qid] * m, rollout=[r] * m, pos=pos,
                    teacher=[name] * m, m_c=ns.m_c[name], advantage=sc.advantage[ti],
                    advantage_lo=_nan_to_none(sc.advantage_lo[ti]),
                    advantage_hi=_nan_to_none(sc.advantage_hi[ti]),
                    advantage_a=_nan_to_none(sc.halves["advantage_a"][ti]),
                    advantage_b=_nan_to_none(sc.halves["advantage_b"][ti]),
                    edge_a=_nan_to_none(sc.halves["edge_a"][ti]),
                    edge_b=_nan_to_none(sc.halves["edge_b"][ti]),
                    teacher_entropy=px["teacher_entropy"], kl_pq=px["kl_pq"], kl_qp=px["kl_qp"],
                    js=px["js"], teachability=px["teachability"],
                    sampled_rank=px["sampled_rank"].astype(np.int64),
                    logq_sampled=px["logq_sampled"])
    # scores
    reasons = maths.reason_names(sc.point["reason"])  # (T, F, M)
    for ti, name in enumerate(names):
        for fi, f in enumerate(families):
            pt = {k: sc.point[k][ti, fi] for k in ("gain", "cos", "cos_c", "edge", "beyond",
                                                    "d_share")}
            lo = {k: _nan_to_none(sc.lo[k][ti, fi]) for k in sc.lo}
            hi = {k: _nan_to_none(sc.hi[k][ti, fi]) for k in sc.hi}
            rows.extend("scores", question_id=[qid] * m, rollout=[r] * m, pos=pos,
                        teacher=[name] * m, signal=[f] * m,
                        d_norm2=ns.d_norm2[(name, f)], hd=ns.hd[(name, f)],
                        gain=_nan_to_none(pt["gain"]), cos=_nan_to_none(pt["cos"]),
                        cos_c=_nan_to_none(pt["cos_c"]),
                        cos_sharp=_nan_to_none(sc.cos_sharp[fi]),
                        edge=_nan_to_none(pt["edge"]), beyond=_nan_to_none(pt["beyond"]),
                        d_residual_share=_nan_to_none(pt["d_share"]),
                        cos_lo=lo["cos"], cos_hi=hi["cos"], edge_lo=lo["edge"],
                        edge_hi=hi["edge"], beyond_lo=lo["beyond"], beyond_hi=hi["beyond"],
                        gain_lo=lo["gain"], gain_hi=hi["gain"],
                        label=list(sc.labels["cos"][ti, fi]),
                        label_edge=list(sc.labels["edge"][ti, fi]),
                        label_beyond=list(sc.labels["beyond"][ti, fi]),
                        null_reason=list(reasons[ti, fi]),
                        param_cos=[param_cos.get((ti, fi, i)) for i in range(m)])


def failed_question_tables(q: Question, error: str, seconds: float) -> dict[str, pa.Table]:
    return {"questions": pa.table({
        "question_id": [q.id], "idx": [q.idx], "family": [q.family], "question": [q.question],
        "solution": [q.solution], "final_answer": [q.final_answer], "status": ["failed"],
        "error": [error], "n_rollouts": [0], "n_correct": [0], "n_nodes": [0],
        "n_continuations": [0], "generated_tokens": [0], "seconds": [seconds]})}


def environment(world: World) -> dict[str, Any]:
    import duckdb
    import transformers

    dev = world.student.device
    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "duckdb": duckdb.__version__, "numpy": np.__version__,
        "device": str(dev),
        "device_name": (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                        else platform.processor() or "cpu"),
        "dtype": str(next(world.student.model.parameters()).dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
    }


def model_fingerprints(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Weights each configuration used: path, bytes and (up to 2 GB) a sha256 of the files."""
    import hashlib

    out: dict[str, dict[str, Any]] = {}
    for name, path in [("student", cfg.student.model)] + [
            (t.name, t.model) for t in cfg.teachers if t.model]:
        files = sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else []
        size = sum(f.stat().st_size for f in files)
        entry: dict[str, Any] = {"path": path, "bytes": size}
        if files and size <= 2 << 30:
            h = hashlib.sha256()
            for f in files:
                h.update(f.read_bytes())
            entry["sha256"] = h.hexdigest()
        out[name] = entry
    return out


def run_tables(cfg: RunConfig, env: dict[str, Any]) -> dict[str, pa.Table]:
    teachers = cfg.all_teachers
    sig_loss = {"rkl": "KL(p || q)", "fkl": "KL(q || p)",
                "jsd": "beta KL(q || M) + (1 - beta) KL(p || M)",
                "sampled": "-(log q_y - log p_y) log p_y, ratio held constant"}
    return {
        "meta": store.meta_table({
            "schema_version": str(schema.SCHEMA_VERSION), "engine_version": __version__,
            "config_toml": cfg.raw_toml, "config_hash": cfg.fingerprint(),
            "config_path": str(cfg.source), "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": env, "student_model": cfg.student.model,
            "models": model_fingerprints(cfg),
            "batch_plan": {"continuations_batch_size": cfg.continuations.batch_size,
                           "score_chunk": cfg.memory.score_chunk},
            "rank_signal": rank_signal(cfg.signals.families),
            "sampling_temperature": str(cfg.sampling.temperature),
            "node_strategy": cfg.nodes.strategy, "continuations_n": str(cfg.continuations.n),
            "rollouts_g": str(cfg.sampling.rollouts), "seed": str(cfg.seed),
            "bootstrap_draws": str(cfg.bootstrap_draws),
            "teacher_logits_temperature": "per teacher (teachers.temperature)",
            "score_rules": dataclasses.asdict(cfg.scores),
            "sharpened_temperature": str(cfg.controls.sharpened_temperature),
            "interval_levels": {**maths.LEVELS,
                                "stakes_candidate": maths.STAKES_CANDIDATE_LEVEL},
        }),
        "teachers": pa.table({
            "teacher": [t.name for t in teachers], "kind": [t.kind for t in teachers],
            "is_control": [t.is_control for t in teachers],
            "model": [cfg.portable(t.model or cfg.student.model) for t in teachers],
            "template": [t.prompt for t in teachers],
            "temperature": [t.temperature for t in teachers],
            "description": [t.description or f"{t.kind} teacher" for t in teachers],
            "ordinal": list(range(len(teachers))),
        }),
        "signals": pa.table({
            "signal": list(cfg.signals.families),
            "loss": [sig_loss[f] for f in cfg.signals.families],
            "beta": [cfg.signals.jsd_beta if f == "jsd" else None for f in cfg.signals.families],
            "exact_split": [f == "rkl" for f in cfg.signals.families],
        }),
    }


ProgressFn = Callable[[QuestionStats, int, int], None]


def load_run_questions(cfg: RunConfig, limit: int = 0) -> list[Question]:
    qs = load_questions(Path(cfg.data.path), preset=cfg.data.preset, fields=cfg.data.fields,
                        limit=cfg.data.limit)
    return qs[:limit] if limit else qs


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
        seeded: dict[str, Seeded] = {}
        if size > 1:
            seeded = _seed_batch(world, batch)
        for q in batch:
            t0 = time.perf_counter()
            try:
                tables, st = process_question(world, q, seeded.get(q.id))
            except _QUESTION_ERRORS as e:
                if isinstance(e, torch.cuda.OutOfMemoryError) and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                err = f"{type(e).__name__}: {e}"
                tables = failed_question_tables(q, err + "\n" + traceback.format_exc(limit=6),
                                                time.perf_counter() - t0)
                st = QuestionStats(q.id, seconds=time.perf_counter() - t0, error=err)
            store.write_part(run_dir, q.idx, q.id, tables)
            results.append(st)
            if on_done:
                on_done(st, len(results), len(todo))
    return results


_QUESTION_ERRORS = (torch.cuda.OutOfMemoryError, RuntimeError, ValueError, KeyError, IndexError,
                    OSError)


def _seed_batch(world: World, batch: list[Question]) -> dict[str, Seeded]:
    """Seed a batch, then visit each model once for all its trunks. A question that fails here
    is simply left out: it seeds itself on its own path, where a failure is recorded."""
    seeded: dict[str, Seeded] = {}
    for q in batch:
        try:
            seeded[q.id] = seed_question(world, q, trunks=False)
        except _QUESTION_ERRORS:
            continue
    try:
        batch_trunks(world, list(seeded.values()))
    except _QUESTION_ERRORS:
        return {}
    return seeded


def timings_json(results: list[QuestionStats], wall: float) -> str:
    return json.dumps({
        "wall_seconds": round(wall, 3),
        "questions": len(results),
        "continuations": sum(r.n_continuations for r in results),
        "generated_tokens": sum(r.generated_tokens for r in results),
        "question_seconds": round(sum(r.seconds for r in results), 3),
    })


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
    nodes = conts = 0
    est = 0.0
    n_cont = world.cfg.continuations.n
    max_new = world.cfg.sampling.max_new_tokens
    eos = set(world.eos)
    for r, resp in enumerate(seeded.responses):
        if not resp:
            continue
        plan = plan_nodes(world, seeded, r)
        n = len(resp)
        for t in plan.nodes:
            nodes += 1
            for a in plan.cands[t].token_ids:
                fixed = is_deterministic(int(t), a, eos, max_new)  # judged once
                conts += 1 if fixed else n_cont
                est += 0 if fixed else n_cont * (n - t)
    return QuestionPlan(q.id, sum(len(r) for r in seeded.responses), nodes, conts, est,
                        time.perf_counter() - t0)
