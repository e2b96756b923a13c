"""Teacher contexts the engine fills in: derived from the run, or written by a model.

The study's question is which context to show a self teacher. Beyond the dataset row's own
fields, a teacher prompt may use:

* ``{few_shot}``: ``[derived] few_shot`` worked examples of *other* questions of the dataset
  (never the question itself), chosen by a key of (seed, question) so a ``--limit`` run and the
  full run show the same examples;
* ``{contrastive_correct}`` / ``{contrastive_incorrect}``: the completion of another rollout of
  the same question that the verifier judged correct / incorrect, filled per rollout (the nearest
  following rollout, wrapping around). Where none exists, ``[derived] contrastive_missing``
  decides: ``solution``, the reference solution stands in for a missing correct example and a
  missing incorrect one is left empty; ``skip``, the teacher is skipped at that rollout (its
  scores NULL, reason ``no_context``);
* ``{<name>}`` of a ``[[contexts]]`` entry: a text a configured model (or the student) writes once
  per question from its own template, sampling settings and seed; cached in the run directory
  (``contexts.jsonl``) so a resumed run does not write it again, and stored in the
  ``contexts`` table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.inputs.config import ContextConfig, DerivedConfig, RunConfig
from engine.inputs.datasets import Question
from engine.inputs.prompts import extract_after_marker, render_template, template_fields
from engine.rng import generator, sequence_key

if TYPE_CHECKING:
    from engine.models.loading import LoadedModel, ResidencyPool

PER_QUESTION = ("few_shot",)
PER_ROLLOUT = ("contrastive_correct", "contrastive_incorrect")
NO_CONTEXT = "no_context"
"""NULL reason of a teacher skipped at a rollout (no contrastive example, policy ``skip``)."""
CACHE_FILE = "contexts.jsonl"


class ContextError(ValueError):
    """A context that cannot be built for a question; the message says what is missing."""


def with_fields(q: Question, extra: Mapping[str, str]) -> Question:
    """The question with extra template fields (derived and generated contexts)."""
    return dataclasses.replace(q, fields={**q.fields, **extra}) if extra else q


def placeholders(cfg: RunConfig) -> set[str]:
    """Every placeholder the engine fills for this config (beyond the dataset's fields)."""
    few = PER_QUESTION if cfg.derived.few_shot else ()
    return {*few, *PER_ROLLOUT, *(c.name for c in cfg.contexts)}


def uses_rollout(template: str) -> bool:
    """Whether a prompt depends on the rollout being scored (contrastive placeholders)."""
    return bool(template_fields(template) & set(PER_ROLLOUT))


def few_shot(q: Question, pool: Sequence[Question], derived: DerivedConfig, seed: int) -> str:
    """``derived.few_shot`` examples of other questions, rendered and joined by blank lines."""
    need = template_fields(derived.few_shot_template)
    others = [o for o in pool if o.id != q.id
              and all(o.fields.get(f) is not None for f in need)]
    k = derived.few_shot
    if len(others) < k:
        raise ContextError(
            f"[derived] few_shot = {k} but only {len(others)} other question(s) have every field "
            f"of few_shot_template ({', '.join(sorted(need))}); lower few_shot or add questions")
    rng = generator(sequence_key(seed, "few_shot", q.id))
    picked = rng.choice(len(others), size=k, replace=False)
    return "\n\n".join(render_template(derived.few_shot_template, others[int(i)]) for i in picked)


def contrastive(r: int, completions: Sequence[str], correct: Sequence[bool | None]
                ) -> dict[str, str | None]:
    """Completions of the nearest other rollouts judged correct and incorrect (None: none)."""
    g = len(completions)
    out: dict[str, str | None] = {"contrastive_correct": None, "contrastive_incorrect": None}
    for step in range(1, g):
        o = (r + step) % g
        key = {True: "contrastive_correct", False: "contrastive_incorrect"}.get(correct[o])
        if key is not None and out[key] is None:
            out[key] = completions[o]
    return out


def rollout_fields(r: int, q: Question, completions: Sequence[str],
                   correct: Sequence[bool | None], derived: DerivedConfig
                   ) -> dict[str, str] | None:
    """The per-rollout placeholders, or None where the teacher is skipped at this rollout.

    With ``contrastive_after`` a completion shows only what follows its last marker (the answer
    after a chain of thought); one without the marker is shown whole."""
    shown = [completions[i] if (kept := extract_after_marker(completions[i],
                                                             derived.contrastive_after)) is None
             else kept.strip() for i in range(len(completions))]
    missing = derived.contrastive_missing
    found = contrastive(r, shown, correct)
    if all(v is not None for v in found.values()):
        return found  # type: ignore[return-value]
    if missing == "skip" or (found["contrastive_correct"] is None and q.solution is None):
        return None
    # "solution": the reference stands in for a missing correct example; a missing incorrect one
    # is left empty (the reference is no example of a mistake)
    return {"contrastive_correct": found["contrastive_correct"] or q.solution or "",
            "contrastive_incorrect": found["contrastive_incorrect"] or ""}


@dataclass(frozen=True)
class Generated:
    """One generated context of one question."""

    context: str
    model: str
    prompt: str
    text: str
    n_tokens: int


def _fingerprint(c: ContextConfig) -> str:
    blob = json.dumps(c.hashed(), sort_keys=True)  # as before revision existed
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ContextWriter:
    """Writes each ``[[contexts]]`` text once per question, through a JSONL cache.

    A cached text is reused only while its context's settings are unchanged (fingerprint). The
    cache line is flushed and fsynced before the text is used, so a crash never leaves a
    question scored with a text that a resumed run would not find again.
    """

    def __init__(self, contexts: Sequence[ContextConfig], models: Mapping[str, LoadedModel],
                 pool: ResidencyPool):
        self.contexts = tuple(contexts)
        self.models = models
        self.pool = pool
        self.cache: dict[tuple[str, str], Generated] = {}
        self.path: Path | None = None
        self._prints = {c.name: _fingerprint(c) for c in self.contexts}

    def attach(self, run_dir: Path) -> None:
        """Cache in the run directory: texts of an earlier, interrupted run are reused."""
        self.path = run_dir / CACHE_FILE
        if self.contexts and self.path.exists():
            self._read(self.path)

    def _read(self, path: Path) -> None:
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                if self._prints.get(row["context"]) == row["fingerprint"]:
                    self.cache[(row["question_id"], row["context"])] = Generated(
                        row["context"], row["model"], row["prompt"], row["text"],
                        int(row["n_tokens"]))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line of a killed run: that text is written again

    def _append(self, qid: str, g: Generated) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {"question_id": qid, "fingerprint": self._prints[g.context],
               **dataclasses.asdict(g)}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def texts(self, q: Question, fields: Mapping[str, str]) -> list[Generated]:
        """Every context of the question, written now where the cache lacks it."""
        out = []
        for c in self.contexts:
            hit = self.cache.get((q.id, c.name))
            if hit is None:
                hit = self._write(c, with_fields(q, fields))
                self.cache[(q.id, c.name)] = hit
                self._append(q.id, hit)
            out.append(hit)
        return out

    def _write(self, c: ContextConfig, q: Question) -> Generated:
        from engine.inputs.prompts import render_prompt
        from engine.models.generation import Sampler, sample_rollouts
        from engine.models.loading import eos_ids

        lm = self.models[c.model]
        prompt, ids = render_prompt(lm.tokenizer, c.prompt, q, chat_template=c.chat_template,
                                    system_prompt=c.system_prompt,
                                    chat_template_kwargs=c.chat_template_kwargs)
        key = sequence_key(c.seed, "context", f"{q.id}:{c.name}")  # names have no ":"
        with self.pool.use(lm):
            (resp,) = sample_rollouts(lm, Sampler(c.temperature, c.top_p, c.top_k), ids,
                                      np.array([key], dtype=np.uint64), c.max_new_tokens,
                                      eos_ids(lm))
        text = lm.tokenizer.decode(resp, skip_special_tokens=True)
        kept = extract_after_marker(text, c.answer_after)
        text = (text if kept is None else kept).strip()
        if not text:
            raise ContextError(f"context {c.name!r} came out empty for question {q.id!r}; raise "
                               "its max_new_tokens or check its prompt")
        return Generated(c.name, c.model, prompt, text, len(resp))
