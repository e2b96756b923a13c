"""The one object a question's stages share: its settings, models and random keys.

Built once per question (`engine.run.world.question_context`, from the loaded World) and handed
to every stage, which takes what it needs; the stages' own arguments are then only the data of
the call (a rollout's response, its candidate sets, its node statistics). Settings default to
the config's defaults and models to None, so a model-free stage (node scores) can be tested on
a context that names only the settings it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.inputs.config import (
    CandidateConfig,
    ContinuationConfig,
    NodeConfig,
    ParamCheckConfig,
    SamplingConfig,
    ScoreConfig,
    SignalConfig,
)
from engine.models.generation import Sampler
from engine.models.loading import LoadedModel, ResidencyPool
from engine.rng import sequence_key

Judge = Callable[[list[str]], list[bool | None]]
"""Full response texts -> verdicts of the question's verifier (None: could not judge)."""


@dataclass(frozen=True)
class QuestionContext:
    """What the stages of one question read, so no stage takes run settings by hand."""

    question_id: str
    seed: int = 0
    teachers: tuple[str, ...] = ()
    """Teacher configuration names in storage order (controls last): the T axis of scores."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    nodes: NodeConfig = field(default_factory=NodeConfig)
    continuations: ContinuationConfig = field(default_factory=ContinuationConfig)
    signals: SignalConfig = field(default_factory=SignalConfig)
    scores: ScoreConfig = field(default_factory=ScoreConfig)
    param_check: ParamCheckConfig = field(default_factory=ParamCheckConfig)
    bootstrap_draws: int = 200
    score_chunk: int = 256
    sharpened_temperature: float = 0.5
    student: LoadedModel | None = None
    sampler: Sampler | None = None
    pool: ResidencyPool | None = None
    eos: tuple[int, ...] = ()
    prompt_ids: list[int] = field(default_factory=list)
    """The student's rendered prompt: every rollout and continuation starts from it."""
    judge: Judge | None = None

    def key(self, purpose: str, rollout: int = 0, node: int = 0, candidate: int = 0,
            continuation: int = 0) -> int:
        """The key of one random sequence of this question (engine.rng: keyed, not global)."""
        return sequence_key(self.seed, purpose, self.question_id, rollout, node, candidate,
                            continuation)

