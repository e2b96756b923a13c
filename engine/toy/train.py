"""Training recipes for the toy student and teachers (CPU, deterministic, selected by evaluation).

Each step draws fresh examples (no fixed dataset) from a role-specific mixture:
- student: half its prompts carry privileged context (the answer, or the worked solution) with a
  correct target, so self-distillation contexts work; its plain prompts show the forgotten-borrow
  misconception on most subtraction cases, so its favourite token is wrong at decisive nodes;
- strong: plain prompts, correct solutions, both families, neutral wording;
- specialist: mostly subtraction with borrows to pay back, little addition, and its own wording of
  the free tokens (',' separators, swapped operands), so it is best exactly where the student errs.
Accuracy jumps suddenly during training, so every run evaluates periodically and keeps the best
checkpoint under its role's rule instead of trusting a fixed step count.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import LlamaForCausalLM

from engine.toy.models import (
    ANSWER_PROMPT,
    SOLUTION_PROMPT,
    STUDENT_PROMPT,
    Arch,
    build_model,
    generate,
)
from engine.toy.task import NEUTRAL_STYLE, Style, is_correct, random_problem, solve
from engine.toy.tokenizer import EOS_ID, PAD_ID, encode

Metrics = dict[str, float]


@dataclass(frozen=True)
class Recipe:
    """Data mixture and optimisation schedule of one model."""

    arch: Arch
    steps: int
    eval_every: int
    p_sub: float = 0.5  # share of subtraction problems
    p_misconception_case: float | None = None  # within subtraction; None = natural rate
    bug_rate: float = 0.0  # plain prompts: chance a misconception case is written wrongly
    p_answer_context: float = 0.0
    p_solution_context: float = 0.0
    style: Style = NEUTRAL_STYLE
    batch_size: int = 64
    lr: float = 3e-3


@dataclass
class TrainResult:
    model: LlamaForCausalLM
    step: int
    metrics: Metrics
    seconds: float
    history: list[tuple[int, Metrics]] = field(default_factory=list)


def example(recipe: Recipe, rng: random.Random, exclude: frozenset[str]) -> tuple[str, str]:
    """One (prompt, target) pair; the target is the response text the loss is computed on."""
    while True:
        family = "sub" if rng.random() < recipe.p_sub else "add"
        forced = None
        if family == "sub" and recipe.p_misconception_case is not None:
            forced = rng.random() < recipe.p_misconception_case
        p = random_problem(rng, family, misconception_case=forced)
        if p.question not in exclude:
            break
    u = rng.random()
    if u < recipe.p_answer_context:
        return ANSWER_PROMPT.format(question=p.question, final_answer=p.answer), solve(p, rng)
    if u < recipe.p_answer_context + recipe.p_solution_context:
        sol = solve(p, rng)
        return SOLUTION_PROMPT.format(question=p.question, solution=sol), sol
    buggy = rng.random() < recipe.bug_rate
    return STUDENT_PROMPT.format(question=p.question), solve(
        p, rng, recipe.style, misconception=buggy
    )


def batch_tensors(pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, ...]:
    """Right-padded ids, attention mask and labels with the prompt and padding masked out."""
    seqs = [(encode(pr), encode(tg) + [EOS_ID]) for pr, tg in pairs]
    width = max(len(a) + len(b) for a, b in seqs)
    ids = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (pr, tg) in enumerate(seqs):
        n = len(pr) + len(tg)
        ids[i, :n] = torch.tensor(pr + tg)
        labels[i, len(pr) : n] = torch.tensor(tg)
        mask[i, :n] = 1
    return ids, mask, labels


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over 5% of the schedule, then cosine decay to 10% of the peak."""
    warm = max(1, total // 20)
    if step < warm:
        return peak * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def sampled_accuracy(
    model: LlamaForCausalLM, prompts: list[str], answers: list[int], *, greedy: bool = False
) -> float:
    outs = generate(model, prompts, greedy=greedy, seed=1234)
    return sum(is_correct(o, a) for o, a in zip(outs, answers, strict=True)) / len(prompts)


Evaluator = Callable[[LlamaForCausalLM], Metrics]
Selector = Callable[[Metrics], tuple[bool, float, bool]]
"""metrics -> (eligible, score, stop now): the best-scoring eligible checkpoint is kept."""


def train(
    recipe: Recipe,
    evaluate: Evaluator,
    select: Selector,
    *,
    seed: int,
    exclude: frozenset[str] = frozenset(),
    log: Callable[[str], None] = print,
    name: str = "model",
) -> TrainResult:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = build_model(recipe.arch, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), weight_decay=0.01)
    start = time.perf_counter()
    best: tuple[float, int, Metrics, dict] | None = None
    last: tuple[int, Metrics] = (0, {})
    history: list[tuple[int, Metrics]] = []
    for step in range(1, recipe.steps + 1):
        model.train()
        for group in opt.param_groups:
            group["lr"] = lr_at(step - 1, recipe.steps, recipe.lr)
        ids, mask, labels = batch_tensors(
            [example(recipe, rng, exclude) for _ in range(recipe.batch_size)]
        )
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % recipe.eval_every and step != recipe.steps:
            continue
        metrics = {"loss": round(loss.item(), 4), **evaluate(model)}
        history.append((step, metrics))
        last = (step, metrics)
        eligible, score, stop = select(metrics)
        log(f"  {name} step {step:4d} {metrics} {'*' if eligible else ''}")
        if eligible and (best is None or score >= best[0]):
            best = (score, step, metrics, copy.deepcopy(model.state_dict()))
        if stop:
            break
    seconds = time.perf_counter() - start
    if best is None:
        log(f"  {name}: no checkpoint met the selection rule; keeping the last one")
        return TrainResult(model, last[0], last[1], seconds, history)
    model.load_state_dict(best[3])
    return TrainResult(model, best[1], best[2], seconds, history)
