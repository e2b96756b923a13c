"""Wall time per stage of a question, stored in `question_stages`: where a run's hours go."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from engine.runfile.schema import STAGES


class StageTimes:
    """Seconds per stage of one question, summed over its rollouts.

    Stages nest without double counting: entering one (verifying continuations) pauses the one
    around it (running them), so the stages of a question add up to its wall time.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._clock = clock
        self._open: list[str] = []
        self._since = 0.0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if name not in self.seconds:
            raise ValueError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
        now = self._clock()
        if self._open:
            self.seconds[self._open[-1]] += now - self._since
        self._open.append(name)
        self._since = now
        try:
            yield
        finally:
            now = self._clock()
            self.seconds[self._open.pop()] += now - self._since
            self._since = now

    def total(self) -> float:
        return sum(self.seconds.values())
