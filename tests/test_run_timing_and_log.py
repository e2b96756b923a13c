"""Where a run's time goes (question_stages, StageTimes) and what it printed (run.log)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import cli, run_ok, table
from tiny_world import make_world

from engine.rng import sequence_key
from engine.run.log import LOG_NAME, RunLog
from engine.run.timing import StageTimes
from engine.runfile import schema
from engine.stages.context import QuestionContext

torch.set_num_threads(1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_nested_stage_pauses_the_one_around_it() -> None:
    clock = FakeClock()
    times = StageTimes(clock)
    with times.stage("continuations"):
        clock.now += 2.0
        with times.stage("verification"):  # the continuations' judge
            clock.now += 3.0
        clock.now += 1.0
    with times.stage("verification"):
        clock.now += 0.5
    assert times.seconds == {"sampling": 0.0, "verification": 3.5, "scoring": 0.0,
                             "continuations": 3.0, "writing": 0.0}
    assert times.total() == clock.now
    with pytest.raises(ValueError, match="unknown stage"), times.stage("decoding"):
        pass


def test_the_context_keys_are_the_questions_sequence_keys() -> None:
    ctx = QuestionContext("q7", seed=3)
    assert ctx.key("branch", 1, 4, 9, 2) == sequence_key(3, "branch", "q7", 1, 4, 9, 2)
    assert ctx.key("bootstrap", 0, 5) == sequence_key(3, "bootstrap", "q7", 0, 5)


def test_run_log_keeps_early_lines_and_appends_flushed(tmp_path: Path) -> None:
    log = RunLog()
    log.line("before the directory exists")
    log.open(tmp_path)
    log.line("first\nsecond")
    lines = (tmp_path / LOG_NAME).read_text().splitlines()  # flushed while still open
    assert [line.split("  ", 1)[1] for line in lines] == ["before the directory exists",
                                                          "first", "second"]
    log.close()
    again = RunLog()
    again.open(tmp_path)
    again.line("resumed")
    again.close()
    assert (tmp_path / LOG_NAME).read_text().splitlines()[:3] == lines
    assert (tmp_path / LOG_NAME).read_text().endswith("  resumed\n")


def test_a_run_times_every_stage_and_logs_what_it_printed(tmp_path: Path) -> None:
    cfg = make_world(tmp_path, questions=2, max_new=5, rollouts=2, n=2)
    code, first = cli("run", str(cfg), "--limit", "1")
    assert code == 0, first
    db = run_ok(cfg)  # resumes: the second question only
    stages = table(db, "SELECT question_id, stage, seconds FROM question_stages ORDER BY ALL")
    by_question: dict[str, dict[str, float]] = {}
    for qid, stage, seconds in stages:
        by_question.setdefault(qid, {})[stage] = seconds
    assert set(by_question) == {"q000", "q001"}
    for qid, seconds in by_question.items():
        assert set(seconds) == set(schema.STAGES), qid
        assert all(s >= 0 for s in seconds.values()) and seconds["sampling"] > 0
        assert seconds["continuations"] > 0 and seconds["scoring"] > 0
        total = table(db, f"SELECT seconds FROM questions WHERE question_id = '{qid}'")[0][0]
        assert sum(seconds.values()) <= total + 1e-6  # stages never overlap

    log = (tmp_path / "run" / LOG_NAME).read_text()
    assert log.count("opd-engine run ") == 2  # the resumed run appended
    for printed in ("loading models for 1 questions", "✓ q000: ", "resuming: 1 question(s)",
                    "✓ q001: ", "merged "):
        assert printed in log, printed
    assert "[" not in log.replace("[b]", "")  # plain text, no console markup
    assert all(line[:4].isdigit() for line in log.splitlines())  # every line timestamped

    code, out = cli("info", str(db))
    assert code == 0 and "seconds per question: sampling" in out
    assert "(mean over 2 questions)" in out
