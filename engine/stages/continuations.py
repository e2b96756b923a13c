"""Targeted continuations: S_hat of every candidate token at every probed node of a rollout.

One prefix forward for the whole rollout; then all candidates x N continuations of all its
nodes decode together (in chunks of `batch_size` rows), each keyed by (node, candidate token,
continuation) so results do not depend on the batch plan beyond float noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.models.generation import decode, prefix_cache
from engine.stages.context import QuestionContext
from engine.stages.nodes import CandidateSet, is_deterministic


@dataclass
class CandidateOutcome:
    """Verdict counts of one candidate. Unverifiable continuations are in neither s nor n."""

    s: int = 0  # successes among judged continuations
    n: int = 0  # judged continuations (1 for a deterministic candidate)
    s_half: int = 0  # successes among the judged ones of the first half (j < N // 2)
    n_half: int = 0
    n_unverifiable: int = 0  # continuations the verifier could not judge
    deterministic: bool = False  # forced EOS / budget-filling token: verified once, certain
    text_success: str | None = None
    text_failure: str | None = None


@dataclass
class ContinuationResult:
    """One rollout's continuations: every candidate's outcome and what sampling them cost."""

    outcomes: dict[tuple[int, int], CandidateOutcome]  # (pos, token_id) -> outcome
    n_continuations: int
    generated_tokens: int


def run_continuations(ctx: QuestionContext, response: list[int], cands: dict[int, CandidateSet],
                      *, rollout: int) -> ContinuationResult:
    """Sample N continuations per (node, candidate) and judge each completed response.

    `cands` maps each probed node position to its candidate set, in node order. The context
    gives the student, sampler, prompt, N, budget, batch size, keys and `judge`, which maps full
    response texts to verdicts; None (timeout, crash) is neither a success nor a failure: left
    out of n and counted in n_unverifiable (method.md). A forced EOS, or a forced token that
    fills the response, is judged once: its outcome is certain, recorded as s = R of n = 1 with
    ``deterministic`` set (both halves carry it).
    """
    lm, sampler, judge = ctx.student, ctx.sampler, ctx.judge
    if lm is None or sampler is None or judge is None:
        raise ValueError("run_continuations needs the context's student, sampler and judge")
    prompt_ids, eos = ctx.prompt_ids, ctx.eos
    n_cont, max_new_tokens = ctx.continuations.n, ctx.sampling.max_new_tokens
    batch_size = ctx.continuations.batch_size
    tok = lm.tokenizer
    eos_set = set(eos)
    n_half = n_cont // 2
    rows: list[tuple[int, int, int]] = []  # (pos, token, j)
    fixed: list[tuple[int, int]] = []  # deterministic (pos, token)
    for t, cand_set in cands.items():
        for a in cand_set.token_ids:
            if is_deterministic(t, a, eos_set, max_new_tokens):
                fixed.append((t, a))
            else:
                rows.extend((t, a, j) for j in range(n_cont))

    conts: list[list[int]] = []
    if rows:
        layers = prefix_cache(lm, prompt_ids + response[:-1]) if len(response) > 1 else \
            prefix_cache(lm, prompt_ids)
        lp = len(prompt_ids)
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            keys = np.array([ctx.key("branch", rollout, t, a, j) for t, a, j in chunk],
                            dtype=np.uint64)
            conts.extend(decode(
                lm, sampler, layers,
                prefix_lens=[lp + t for t, _, _ in chunk],
                first_tokens=[a for _, a, _ in chunk],
                keys=keys,
                first_steps=[t + 1 for t, _, _ in chunk],
                max_steps=[max_new_tokens - t - 1 for t, _, _ in chunk],
                eos=eos,
            ))

    seqs = [response[:t] + [a] + c for (t, a, _), c in zip(rows, conts, strict=True)]
    seqs += [response[:t] + [a] for t, a in fixed]
    texts = tok.batch_decode(seqs, skip_special_tokens=True) if seqs else []
    uniq = sorted(set(texts))
    verdict_of = dict(zip(uniq, judge(uniq), strict=True)) if uniq else {}

    outcomes: dict[tuple[int, int], CandidateOutcome] = {}
    tails: dict[tuple[int, int], list[tuple[bool, list[int]]]] = {}
    for (t, a, j), c, text in zip(rows, conts, texts, strict=False):
        verdict = verdict_of[text]
        o = outcomes.setdefault((t, a), CandidateOutcome())
        if verdict is None:
            o.n_unverifiable += 1
            continue
        ok = verdict is True
        o.s += ok
        o.n += 1
        if j < n_half:
            o.s_half += ok
            o.n_half += 1
        tails.setdefault((t, a), []).append((ok, [a] + c))
    for i, (t, a) in enumerate(fixed):
        verdict = verdict_of[texts[len(rows) + i]]
        if verdict is None:
            outcomes[(t, a)] = CandidateOutcome(n_unverifiable=1, deterministic=True)
            continue
        ok = int(verdict is True)
        outcomes[(t, a)] = CandidateOutcome(ok, 1, ok, 1, deterministic=True)
        tails[(t, a)] = [(bool(ok), [a])]
    for key, items in tails.items():
        succ = next((ids for ok, ids in items if ok), None)
        fail = next((ids for ok, ids in items if not ok), None)
        o = outcomes[key]
        o.text_success = tok.decode(succ) if succ is not None else None
        o.text_failure = tok.decode(fail) if fail is not None else None
    generated = sum(len(c) for c in conts) + len(rows)
    return ContinuationResult(outcomes, len(rows) + len(fixed), generated)
