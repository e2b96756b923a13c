"""Node selection (which prefixes get targeted continuations) and candidate sets.

Budgets count generated tokens: a node near the start of a long rollout costs |C| x N x (tokens
left), one near the end almost nothing, so the budget, not the rollout length, bounds the work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.inputs.config import CandidateConfig, NodeConfig


@dataclass(frozen=True)
class CandidateSet:
    """Candidates of one node: token ids (sampled token first) and why each is there."""

    token_ids: list[int]
    sources: list[str]


def is_deterministic(pos: int, token: int, eos: set[int] | frozenset[int],
                     max_new_tokens: int) -> bool:
    """A forced EOS, or a forced token that fills the response budget: nothing is sampled
    after it, so its outcome is certain and one verification settles it."""
    return token in eos or pos + 1 >= max_new_tokens


def node_costs(cands: list[CandidateSet], n_cont: int, eos: set[int] | frozenset[int],
               max_new_tokens: int) -> np.ndarray:
    """Generated tokens each node is expected to cost: N x (tokens left) per sampled candidate,
    one token per deterministic candidate (it is verified once, never continued)."""
    n = len(cands)
    return np.array([
        sum(1 if is_deterministic(t, a, eos, max_new_tokens) else n_cont * (n - t)
            for a in c.token_ids)
        for t, c in enumerate(cands)], dtype=np.float64)


def node_priority(strategy: NodeConfig, entropy: np.ndarray) -> np.ndarray:
    """Positions eligible under the strategy, most important first."""
    n = len(entropy)
    kind, arg = strategy.kind, strategy.arg
    if kind == "all":
        return np.arange(n)
    if kind == "stride":
        return np.arange(0, n, arg)
    if kind == "entropy":
        order = np.argsort(-entropy, kind="stable")
        return order[: min(arg, n)]
    raise ValueError(f"node strategy {strategy.strategy!r} is not implemented")


def select_nodes(strategy: NodeConfig, entropy: np.ndarray, cost: np.ndarray,
                 budget_tokens: float) -> np.ndarray:
    """Positions to probe, sorted: in priority order, every node that still fits the budget
    (a node too expensive for what is left is skipped, cheaper later ones still enter)."""
    order = node_priority(strategy, entropy)
    if budget_tokens > 0:
        keep, left = [], float(budget_tokens)
        for t in order:
            if cost[t] <= left:
                keep.append(t)
                left -= cost[t]
        order = np.array(keep, dtype=np.int64)
    return np.sort(order)


def candidate_set(
    sampled: int,
    student_top: list[int],
    teacher_top: dict[str, list[int]],
    cfg: CandidateConfig,
    p: dict[int, float] | None = None,
    q: dict[str, dict[int, float]] | None = None,
) -> CandidateSet:
    """Sampled token, student top-k_s and every teacher's top-k_t, de-duplicated.

    With the plausibility filter on, candidates whose p and every q fall below the threshold are
    dropped, but the sampled token and the most likely other candidate always stay (a node left
    with one candidate carries no signal).
    """
    order: list[int] = []
    why: dict[int, list[str]] = {}

    def add(tok: int, src: str) -> None:
        if tok not in why:
            why[tok] = []
            order.append(tok)
        if src not in why[tok]:
            why[tok].append(src)

    add(sampled, "sampled")
    for t in student_top[: cfg.student_top_k]:
        add(t, "student")
    for name, tops in teacher_top.items():
        for t in tops[: cfg.teacher_top_k]:
            add(t, name)
    if cfg.plausibility > 0 and p is not None:
        thr = cfg.plausibility

        def plausible(tok: int) -> bool:
            if p.get(tok, 0.0) >= thr:
                return True
            return any(qc.get(tok, 0.0) >= thr for qc in (q or {}).values())

        others = [t for t in order[1:]]
        keep = [t for t in others if plausible(t)]
        if not keep and others:
            keep = [max(others, key=lambda t: p.get(t, 0.0))]
        order = [order[0], *keep]
    return CandidateSet(order, [",".join(why[t]) for t in order])
