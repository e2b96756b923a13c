"""`opd-engine toy build`: questions, trained models, demo config and (via a callback) the demo DB.

The world is built to contain what the diagnostic must find (see engine/toy/train.py): a student
with a systematic mistake, a strong generalist, a specialist that knows exactly that mistake, and
self-distillation contexts that work. `mini=True` builds the same files from a few training steps
so tests can exercise the whole path in seconds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.toy.models import (
    ANSWER_PROMPT,
    MAX_NEW_TOKENS,
    SOLUTION_PROMPT,
    STUDENT_PROMPT,
    Arch,
    n_params,
    save_model,
)
from engine.toy.probe import ProbeRow, TeacherView, format_probe, probe
from engine.toy.task import Problem, Style, question_row, random_problem, write_jsonl
from engine.toy.train import Metrics, Recipe, Selector, sampled_accuracy, train

MODEL_NAMES = ("student", "strong", "specialist")


@dataclass(frozen=True)
class DemoSize:
    """The demo's cost knobs; continuations ~= questions x rollouts x nodes x |C| x n."""

    add: int = 16
    sub_plain: int = 8  # subtraction without a borrow to pay back
    sub_misconception: int = 24  # subtraction where the planted mistake can strike
    rollouts: int = 4
    n: int = 12
    student_top_k: int = 2
    teacher_top_k: int = 2

    @property
    def questions(self) -> int:
        return self.add + self.sub_plain + self.sub_misconception


FULL_DEMO = DemoSize()
MINI_DEMO = DemoSize(add=3, sub_plain=2, sub_misconception=3, rollouts=2, n=4)


@dataclass(frozen=True)
class ModelReport:
    name: str
    params: int
    bytes: int
    step: int
    seconds: float
    metrics: Metrics


@dataclass
class WorldReport:
    out_dir: Path
    questions_path: Path
    config_path: Path
    models: dict[str, ModelReport] = field(default_factory=dict)
    probe: list[ProbeRow] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def format(self) -> str:
        lines = [f"toy world in {self.out_dir}"]
        for m in self.models.values():
            lines.append(
                f"  {m.name:<11} {m.params:>8,} params {m.bytes / 1e6:5.2f} MB  "
                f"selected step {m.step:4d} after {m.seconds:6.1f} s  {m.metrics}"
            )
        lines.append(format_probe(self.probe))
        lines.append("  timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        return "\n".join(lines)


# --- recipes and selection rules ---------------------------------------------------------------


def recipes(mini: bool) -> dict[str, Recipe]:
    if mini:
        tiny = Arch(hidden=32, layers=1, heads=2, ffn=64)
        mini_recipe = Recipe(arch=tiny, steps=6, eval_every=3, batch_size=16)
        return dict.fromkeys(MODEL_NAMES, mini_recipe)
    return {
        "student": Recipe(
            arch=Arch(hidden=64, layers=2, heads=4, ffn=256),
            steps=1500,
            eval_every=100,
            bug_rate=0.9,
            p_answer_context=0.25,
            p_solution_context=0.25,
        ),
        # 1000 steps reached only 0.835 sampled; 2000 reach 0.95-1.00. The strong generalist
        # shares the student's habit (more firmly), which costs it about 2% of random problems:
        # a blind spot that only the specialist can fix.
        "strong": Recipe(
            arch=Arch(hidden=128, layers=2, heads=4, ffn=512), steps=2000, eval_every=200,
            bug_rate=0.97,
        ),
        "specialist": Recipe(
            arch=Arch(hidden=96, layers=2, heads=4, ffn=384),
            steps=800,
            eval_every=50,
            p_sub=0.85,
            p_misconception_case=0.7,
            style=Style(p_comma=0.85, p_swap=0.85),
        ),
    }


def _eval_sets(n: int, seed: int) -> dict[str, list[Problem]]:
    rng = random.Random(seed)
    sets = {
        "mixed": [random_problem(rng) for _ in range(n)],
        "misconception": [random_problem(rng, "sub", misconception_case=True) for _ in range(n)],
    }
    # the demo's composition (FULL_DEMO: 1/3 add, 1/6 plain sub, 1/2 misconception cases):
    # the student's 30-70% band is measured where the diagnostic will look at it
    sets["demo_mix"] = [
        random_problem(rng, "add") if i % 6 < 2 else
        random_problem(rng, "sub", misconception_case=False) if i % 6 == 2 else
        random_problem(rng, "sub", misconception_case=True)
        for i in range(n)
    ]
    return sets


def _evaluator(name: str, sets: dict[str, list[Problem]]) -> Callable:
    mixed, hard, demo_mix = sets["mixed"], sets["misconception"], sets["demo_mix"]

    def acc(model, problems, template, greedy=False) -> float:
        prompts = [
            template.format(question=p.question, final_answer=p.answer, solution=_ref(p))
            for p in problems
        ]
        return round(sampled_accuracy(model, prompts, [p.answer for p in problems],
                                      greedy=greedy), 3)

    def evaluate(model) -> Metrics:
        out = {"sampled": acc(model, mixed, STUDENT_PROMPT)}
        if name == "student":
            out["sampled_demo_mix"] = acc(model, demo_mix, STUDENT_PROMPT)
            out["sampled_solution_ctx"] = acc(model, mixed, SOLUTION_PROMPT)
        else:
            out["sampled_misconception"] = acc(model, hard, STUDENT_PROMPT)
        return out

    return evaluate


def _ref(p: Problem) -> str:
    return question_row(p, "", random.Random(p.a * 100003 + p.b))["solution"]


def selectors(mini: bool) -> dict[str, Selector]:
    if mini:
        return {name: (lambda m: (True, 0.0, False)) for name in MODEL_NAMES}
    return {
        # Student: inside the 30-70% band on the demo's mix, the checkpoint that best uses the
        # worked solution.
        "student": lambda m: (
            0.3 <= m["sampled_demo_mix"] <= 0.7,
            m["sampled_solution_ctx"],
            m["sampled_solution_ctx"] >= 0.98 and 0.3 <= m["sampled_demo_mix"] <= 0.7,
        ),
        "strong": lambda m: (True, m["sampled"], m["sampled"] >= 0.975),
        "specialist": lambda m: (
            True, m["sampled_misconception"], m["sampled_misconception"] >= 0.98
        ),
    }


# --- files -------------------------------------------------------------------------------------


def demo_questions(size: DemoSize, seed: int) -> list[dict]:
    """Fixed mix: addition, subtraction without and with a borrow to pay back (the mistake case)."""
    rng = random.Random(seed + 4242)
    plan = (
        [("add", None)] * size.add
        + [("sub", False)] * size.sub_plain
        + [("sub", True)] * size.sub_misconception
    )
    rng.shuffle(plan)
    rows, seen = [], set()
    for family, case in plan:
        while True:
            p = random_problem(rng, family, misconception_case=case)
            if p.question not in seen:
                break
        seen.add(p.question)
        rows.append(question_row(p, f"q{len(rows):03d}", rng))
    return rows


def demo_config(size: DemoSize) -> str:
    """The demo config (docs/config-draft.md format); paths relative to the config's directory."""
    return f'''# Demo of the offline toy world, written by `opd-engine toy build`.
# Paths are relative to this file's directory.
# Size: {size.questions} questions x {size.rollouts} rollouts, every node probed ("all"),
# candidates = sampled + student top-{size.student_top_k} + each teacher's top-{size.teacher_top_k},
# n = {size.n} continuations per candidate.
output_dir = "../runs/demo"
seed = 0
device = "cpu"
dtype = "float32"

[student]
model = "models/student"
prompt = "{STUDENT_PROMPT}"

[data]
path = "questions.jsonl"
preset = "plain"
limit = 0

[verifier]
kind = "numeric"

[sampling]
temperature = 1.0
top_p = 1.0
top_k = 0
max_new_tokens = {MAX_NEW_TOKENS}
rollouts = {size.rollouts}

[candidates]
student_top_k = {size.student_top_k}
teacher_top_k = {size.teacher_top_k}
plausibility = 0.0

[continuations]
n = {size.n}
batch_size = 4096

[nodes]
strategy = "all"
budget_tokens = 0

[signals]
# reverse KL (the rank signal) and its sampled-token estimate, the per-token loss OPD trains
# with; fkl and jsd are left out to keep the demo database under 30 MB with eight teachers
families = ["rkl", "sampled"]

[controls]
sharpened = true
sharpened_temperature = 0.5
softened = true
softened_temperature = 2.0

[bootstrap]
draws = 200

[[teachers]]
name = "strong"
kind = "external"
model = "models/strong"
prompt = "{STUDENT_PROMPT}"

[[teachers]]
name = "specialist"
kind = "external"
model = "models/specialist"
prompt = "{STUDENT_PROMPT}"

[[teachers]]
name = "self_answer"
kind = "self"
prompt = "{ANSWER_PROMPT}"

[[teachers]]
name = "self_solution"
kind = "self"
prompt = "{SOLUTION_PROMPT}"

# the student shown the strong teacher's own worked solution (written once per question)
[[teachers]]
name = "self_strong_sol"
kind = "self"
prompt = "Q:{{question}} S:{{strong_solution}} A:"

# the student shown another rollout of its own that failed, then one that succeeded
[[teachers]]
name = "self_contrast"
kind = "self"
prompt = "Q:{{question}} A:{{contrastive_incorrect}} S:{{contrastive_correct}} A:"

[derived]
contrastive_missing = "solution"  # no other correct rollout: the reference solution stands in

[[contexts]]
name = "strong_solution"
model = "models/strong"
prompt = "{STUDENT_PROMPT}"
temperature = 0.5
max_new_tokens = {MAX_NEW_TOKENS}
seed = 0
'''


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def build_world(
    out_dir: Path,
    *,
    mini: bool = False,
    seed: int = 0,
    log: Callable[[str], None] = print,
    make_demo_db: Callable[[Path], None] | None = None,
    threads: int = 2,
) -> WorldReport:
    """Write questions.jsonl, models/<name>/, demo.toml; then call `make_demo_db(demo.toml)`.

    Weights are reproducible for a given seed *and* thread count (reductions change with threads);
    on a machine shared with other jobs, threads=1 avoids oversubscription stalls.
    """
    torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = MINI_DEMO if mini else FULL_DEMO
    report = WorldReport(out_dir, out_dir / "questions.jsonl", out_dir / "demo.toml")

    rows = demo_questions(size, seed)
    write_jsonl(rows, report.questions_path)
    log(f"wrote {len(rows)} questions to {report.questions_path}")
    exclude = frozenset(r["question"] for r in rows)

    sets = _eval_sets(16 if mini else 200, seed + 12345)
    rules = selectors(mini)
    trained = {}
    for i, (name, recipe) in enumerate(recipes(mini).items()):
        log(f"training {name} ({recipe.steps} steps max)")
        res = train(recipe, _evaluator(name, sets), rules[name], seed=seed + 101 * i,
                    exclude=exclude, log=log, name=name)
        save_model(res.model, out_dir / "models" / name)
        trained[name] = res.model
        report.models[name] = ModelReport(
            name, n_params(res.model), _dir_bytes(out_dir / "models" / name), res.step,
            round(res.seconds, 1), res.metrics,
        )
        report.seconds[f"train {name}"] = res.seconds

    report.config_path.write_text(demo_config(size))
    log(f"wrote {report.config_path}")

    t0 = time.perf_counter()
    views = [
        TeacherView("student", trained["student"], STUDENT_PROMPT),
        TeacherView("strong", trained["strong"], STUDENT_PROMPT),
        TeacherView("specialist", trained["specialist"], STUDENT_PROMPT),
        TeacherView("self_answer", trained["student"], ANSWER_PROMPT),
        TeacherView("self_solution", trained["student"], SOLUTION_PROMPT),
    ]
    report.probe = probe(views, n=12 if mini else 100, seed=seed + 777)
    report.seconds["probe"] = time.perf_counter() - t0
    log(report.format())

    if make_demo_db is not None:
        t0 = time.perf_counter()
        make_demo_db(report.config_path)
        report.seconds["demo db"] = time.perf_counter() - t0
    return report
