"""The first stage of a question: prompts, the G rollouts, their verdicts and every model's
hidden states over them (the trunks the scorer reads)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from engine.inputs import contexts
from engine.inputs.config import TeacherConfig
from engine.inputs.datasets import Question
from engine.models.generation import sample_rollouts
from engine.models.loading import LoadedModel
from engine.rng import sequence_key
from engine.run.timing import StageTimes
from engine.run.world import World, derived_fields, render_prompt_for
from engine.stages.scoring import Source, TeacherView, response_hidden
from engine.verify.verifiers import Verdict

Prompt = tuple[str, list[int]]
"""A rendered prompt: its text and its token ids."""


@dataclass
class Seeded:
    """A question after its rollouts: prompts, scoring sources and hidden states."""

    student_text: str
    student_ids: list[int]
    teacher_prompts: dict[str, Prompt]
    """Prompts of the teachers that see the same context at every rollout."""
    sources: list[Source]
    views: list[list[TeacherView]]
    """Per rollout, one view per teacher (a rollout-dependent teacher reads its own source)."""
    responses: list[list[int]]
    texts: list[str]
    verdicts: list[Verdict]
    hidden: list[list[Tensor]]
    """Per rollout, per source: hidden states predicting each response token."""
    rollout_prompts: dict[tuple[int, str], Prompt | None] = field(default_factory=dict)
    """(rollout, teacher) -> prompt of a rollout-dependent teacher; None: skipped there."""
    generated: list[contexts.Generated] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)
    """Time spent seeding, by stage; the question's later stages add to it."""

    def skipped(self, r: int) -> set[str]:
        """Teachers without a context at rollout r (scores NULL, reason no_context)."""
        return {name for (rr, name), p in self.rollout_prompts.items() if rr == r and p is None}


def seed_question(world: World, q: Question, *, trunks: bool = True) -> Seeded:
    """Render every prompt, sample the G rollouts, verify them, run every model's trunk
    (`trunks=False` leaves that to `batch_trunks`, which visits each model once per batch)."""
    cfg = world.cfg
    times = StageTimes()
    with times.stage("sampling"):
        fields = derived_fields(world, q)
        generated = world.writer.texts(q, fields)
        filled = contexts.with_fields(q, {**fields, **{g.context: g.text for g in generated}})
        student_text, student_ids = render_prompt_for(world, None, filled)
        per_rollout = [t for t in world.teachers if contexts.uses_rollout(t.prompt)]
        teacher_prompts = {t.name: render_prompt_for(world, t, filled) for t in world.teachers
                           if t not in per_rollout}

        # sources: (model, prompt[, rollout]) whose hidden states are computed once per rollout
        sources: list[Source] = [Source(world.student, student_ids)]
        src_index: dict[tuple[str, str, int | None], int] = {("", student_text, None): 0}

        def source(t: TeacherConfig, prompt: Prompt, r: int | None) -> int:
            key = (t.model, prompt[0], r)
            if key not in src_index:
                lm = world.externals[t.model] if t.model else world.student
                src_index[key] = len(sources)
                sources.append(Source(lm, prompt[1], r))
            return src_index[key]

        shared = {t.name: TeacherView(t, source(t, teacher_prompts[t.name], None),
                                      t.temperature)
                  for t in world.teachers if t not in per_rollout}
        keys = np.array([sequence_key(cfg.seed, "rollout", q.id, r)
                         for r in range(cfg.sampling.rollouts)], dtype=np.uint64)
        with world.pool.use(world.student):
            responses = sample_rollouts(world.student, world.sampler, student_ids, keys,
                                        cfg.sampling.max_new_tokens, world.eos)
        texts = world.student.tokenizer.batch_decode(responses, skip_special_tokens=True)
    with times.stage("verification"):
        verdicts = world.verifier.verify_many(texts, q)

    # rollout-dependent teachers (contrastive examples) once the verdicts are known
    with times.stage("sampling"):
        rollout_prompts: dict[tuple[int, str], Prompt | None] = {}
        views: list[list[TeacherView]] = []
        correct = [v.correct for v in verdicts]
        for r in range(len(responses)):
            extra = contexts.rollout_fields(r, q, texts, correct, cfg.derived)
            row = []
            for t in world.teachers:
                if t not in per_rollout:
                    row.append(shared[t.name])
                elif extra is None:  # read as a control would be, then NULLed: rows.null_skipped
                    rollout_prompts[(r, t.name)] = None
                    row.append(TeacherView(t.as_control(), 0, 1.0))
                else:
                    prompt = render_prompt_for(world, t, contexts.with_fields(filled, extra))
                    rollout_prompts[(r, t.name)] = prompt
                    row.append(TeacherView(t, source(t, prompt, r), t.temperature))
            views.append(row)
    with times.stage("scoring"):
        hidden = response_hidden(world.pool, sources, responses) if trunks else []
    return Seeded(student_text, student_ids, teacher_prompts, sources, views, responses, texts,
                  verdicts, hidden, rollout_prompts, generated, times)


def batch_trunks(world: World, batch: list[Seeded]) -> None:
    """Hidden states for a batch of seeded questions, bringing each model in once.

    With `max_resident_models = 1` this turns (teachers + 1) swaps per question into
    (teachers + 1) per batch of questions. Each question's own forward passes count as its
    scoring time; bringing a model in is shared by the batch and counted in none.
    """
    models: dict[int, LoadedModel] = {}
    for seeded in batch:
        seeded.hidden = [[None] * len(seeded.sources)  # type: ignore[list-item]
                         for _ in seeded.responses]
        for src in seeded.sources:
            models.setdefault(id(src.lm), src.lm)
    for lm in models.values():
        with world.pool.use(lm):
            for seeded in batch:
                with seeded.times.stage("scoring"):
                    idxs = [i for i, src in enumerate(seeded.sources) if src.lm is lm]
                    part = response_hidden(world.pool, [seeded.sources[i] for i in idxs],
                                           seeded.responses)
                    for r in range(len(seeded.responses)):
                        for j, i in enumerate(idxs):
                            seeded.hidden[r][i] = part[r][j]
