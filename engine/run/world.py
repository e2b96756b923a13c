"""What a run loads once (the World: models, verifier, sampler, teacher views) and what each
question derives from it: its prompts and its `QuestionContext`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.inputs import contexts
from engine.inputs.config import RunConfig, TeacherConfig
from engine.inputs.datasets import Question, load_questions
from engine.inputs.prompts import render_prompt
from engine.models.generation import Sampler
from engine.models.loading import (
    LoadedModel,
    ResidencyPool,
    eos_ids,
    load_model,
    resolve_device,
    resolve_dtype,
)
from engine.models.tokens import TokenTexts
from engine.models.vocab import check_compatible
from engine.stages.context import Judge, QuestionContext
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
    writer: contexts.ContextWriter
    dataset: list[Question] = field(default_factory=list)
    """Every question of the data file: the pool few-shot examples come from."""

    def close(self) -> None:
        self.verifier.close()


def load_world(cfg: RunConfig) -> World:
    """Load every model the config names (checking vocabularies and parameter groups before any
    work), the verifier and the context writers."""
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    student = load_model(cfg.student.model, device=device, dtype=dtype, name="student",
                         **cfg.student.load_kwargs)
    externals: dict[str, LoadedModel] = {}
    for t in cfg.all_teachers:
        if t.model and t.model not in externals:
            lm = load_model(t.model, device=device, dtype=dtype, name=t.name, **t.load_kwargs)
            check_compatible(student.tokenizer, lm.tokenizer, student_name="student",
                             teacher_name=t.name)
            externals[t.model] = lm
    verifier = make_verifier(cfg.verifier.kind, callable_spec=cfg.verifier.callable,
                             timeout_s=cfg.verifier.timeout_s,
                             answer_after=cfg.verifier.answer_after)
    sampling = cfg.sampling
    if cfg.param_check.nodes:
        from engine.stages.param_check import select_parameters

        select_parameters(student.model, cfg.param_check.groups)  # fail before any work
    writers: dict[str, LoadedModel] = {"student": student}
    for c in cfg.contexts:  # a context writer need not share the student's vocabulary
        if c.model not in writers:
            writers[c.model] = externals.get(c.model) or load_model(
                c.model, device=device, dtype=dtype, name=f"context {c.name}", **c.load_kwargs)
    pool = ResidencyPool(cfg.memory.max_resident_models)
    if pool.limit:  # start with only the student resident
        for lm in {id(m): m for m in (*externals.values(), *writers.values())}.values():
            if lm is not student:
                lm.offload()
    dataset = (load_questions(Path(cfg.data.path), preset=cfg.data.preset,
                              fields=cfg.data.fields) if cfg.derived.few_shot else [])
    return World(cfg, student, externals, verifier,
                 Sampler(sampling.temperature, sampling.top_p, sampling.top_k),
                 eos_ids(student), TokenTexts(student.tokenizer), cfg.all_teachers, pool,
                 contexts.ContextWriter(cfg.contexts, writers, pool), dataset)


def load_run_questions(cfg: RunConfig, limit: int = 0) -> list[Question]:
    """The config's questions, the first `limit` of them when limit > 0 (`run --limit`)."""
    questions = load_questions(Path(cfg.data.path), preset=cfg.data.preset,
                               fields=cfg.data.fields, limit=cfg.data.limit)
    return questions[:limit] if limit else questions


def render_prompt_for(world: World, teacher: TeacherConfig | None, q: Question
                      ) -> tuple[str, list[int]]:
    """(text, ids) of the prompt one configuration sees: the student's when `teacher` is None,
    rendered with the tokenizer of the model that reads it."""
    st = world.cfg.student
    lm = world.student if teacher is None or not teacher.model else world.externals[teacher.model]
    template = st.prompt if teacher is None else teacher.prompt
    return render_prompt(lm.tokenizer, template, q, chat_template=st.chat_template,
                         system_prompt=st.system_prompt,
                         chat_template_kwargs=st.chat_template_kwargs)


def derived_fields(world: World, q: Question) -> dict[str, str]:
    """Per-question derived placeholders (few-shot examples)."""
    d = world.cfg.derived
    return {"few_shot": contexts.few_shot(q, world.dataset, d, world.cfg.seed)} \
        if d.few_shot else {}


def render_all_prompts(world: World, questions: list[Question]) -> None:
    """Render every model's prompt for every question (chat templates included) before anything
    is written, so a template that fails on question 900 fails the run at its start. Texts the
    run writes later (generated contexts, other rollouts) are stood in for here."""
    stand_in = {name: "(context)" for name in (*contexts.PER_ROLLOUT,
                                               *(c.name for c in world.cfg.contexts))}
    for q in questions:
        with_stand_ins = contexts.with_fields(q, {**stand_in, **derived_fields(world, q)})
        render_prompt_for(world, None, with_stand_ins)
        for t in world.teachers:
            render_prompt_for(world, t, with_stand_ins)


def question_context(world: World, q: Question, prompt_ids: list[int],
                     judge: Judge | None = None) -> QuestionContext:
    """The settings, models and keys every stage of question `q` reads (built once)."""
    cfg = world.cfg
    return QuestionContext(
        question_id=q.id, seed=cfg.seed, teachers=tuple(t.name for t in world.teachers),
        sampling=cfg.sampling, candidates=cfg.candidates, nodes=cfg.nodes,
        continuations=cfg.continuations, signals=cfg.signals, scores=cfg.scores,
        param_check=cfg.param_check,
        bootstrap_draws=cfg.bootstrap_draws, score_chunk=cfg.memory.score_chunk,
        sharpened_temperature=cfg.controls.sharpened_temperature, student=world.student,
        sampler=world.sampler, pool=world.pool, eos=tuple(world.eos), prompt_ids=prompt_ids,
        judge=judge)
