"""Probe report: does the toy world contain the situations the diagnostic exists to find?

Before running the full diagnostic we check, cheaply: accuracy per model and family (greedy and
sampled at T=1); how often the student's favourite token is the planted mistake at the decisive
node (the first character where the forgotten borrow departs from the correct solution); and the
probability each teacher configuration gives the correct token there, versus the student. The
specialist should beat the strong teacher exactly at those nodes and lose on addition.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from transformers import LlamaForCausalLM

from engine.toy.models import generate, next_token_probs
from engine.toy.task import FAMILIES, NEUTRAL_STYLE, Problem, is_correct, random_problem, render
from engine.toy.tokenizer import VOCAB
from engine.toy.train import batch_tensors


@dataclass(frozen=True)
class TeacherView:
    """A model seen through one prompt template (external teacher or self + context)."""

    name: str
    model: LlamaForCausalLM
    prompt: str

    def prompt_for(self, p: Problem, solution: str) -> str:
        return self.prompt.format(question=p.question, final_answer=p.answer, solution=solution)


@dataclass(frozen=True)
class ProbeRow:
    name: str
    greedy: dict[str, float]
    sampled: dict[str, float]
    p_correct_decisive: float  # mean prob of the correct token at decisive nodes
    p_bug_decisive: float  # mean prob of the planted mistake there
    argmax_bug_rate: float  # share of decisive nodes whose favourite token is the mistake
    p_reference_add: float  # mean prob of the reference token along correct addition solutions


@torch.no_grad()
def reference_prob(model: LlamaForCausalLM, pairs: list[tuple[str, str]]) -> float:
    """Mean probability the model gives each token of the target after its prompt."""
    ids, mask, labels = batch_tensors(pairs)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    keep = target != -100
    probs = logits.softmax(-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (probs[keep]).mean().item()


def probe(views: list[TeacherView], *, n: int = 100, seed: int = 777) -> list[ProbeRow]:
    rng = random.Random(seed)
    per_family = {f: [random_problem(rng, f) for _ in range(n)] for f in FAMILIES}
    decisive: list[tuple[Problem, str, str, str]] = []  # problem, solution, prefix, good, bad
    while len(decisive) < n:
        p = random_problem(rng, "sub", misconception_case=True)
        seps, swaps = NEUTRAL_STYLE.draw(rng, p.n_digits)
        good = render(p, seps, swaps)
        bad = render(p, seps, swaps, misconception=True)
        i = next(k for k, (x, y) in enumerate(zip(good, bad, strict=False)) if x != y)
        decisive.append((p, good, good[:i], good[i], bad[i]))
    adds = [(p, render(p, *NEUTRAL_STYLE.draw(rng, p.n_digits))) for p in per_family["add"]]
    rows = []
    for v in views:
        greedy, sampled = {}, {}
        for fam, probs in per_family.items():
            prompts = [v.prompt_for(p, render(p, *NEUTRAL_STYLE.draw(rng, p.n_digits)))
                       for p in probs]
            for store, is_greedy in ((greedy, True), (sampled, False)):
                outs = generate(v.model, prompts, greedy=is_greedy, seed=seed)
                store[fam] = sum(is_correct(o, p.answer) for o, p in zip(outs, probs,
                                                                        strict=True)) / n
        texts = [v.prompt_for(p, sol) + pre for p, sol, pre, _, _ in decisive]
        q = next_token_probs(v.model, texts)
        good_ids = torch.tensor([VOCAB[g] for *_, g, _ in decisive])
        bad_ids = torch.tensor([VOCAB[b] for *_, b in decisive])
        rows.append(
            ProbeRow(
                name=v.name,
                greedy=greedy,
                sampled=sampled,
                p_correct_decisive=q.gather(1, good_ids[:, None]).mean().item(),
                p_bug_decisive=q.gather(1, bad_ids[:, None]).mean().item(),
                argmax_bug_rate=(q.argmax(-1) == bad_ids).float().mean().item(),
                p_reference_add=reference_prob(v.model, [(v.prompt_for(p, s), s) for p, s in adds]),
            )
        )
    return rows


def format_probe(rows: list[ProbeRow]) -> str:
    head = (
        f"{'model / context':<16} {'greedy add/sub':>15} {'sampled add/sub':>16} "
        f"{'P(correct) decisive':>20} {'P(mistake)':>10} {'argmax=mistake':>14} {'P(ref) add':>10}"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r.name:<16} {r.greedy['add']:>7.2f}/{r.greedy['sub']:<7.2f} "
            f"{r.sampled['add']:>8.2f}/{r.sampled['sub']:<7.2f} {r.p_correct_decisive:>20.3f} "
            f"{r.p_bug_decisive:>10.3f} {r.argmax_bug_rate:>14.2f} {r.p_reference_add:>10.3f}"
        )
    return "\n".join(lines)
