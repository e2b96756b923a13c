"""Node strategies, budgets and candidate sets."""

from __future__ import annotations

import numpy as np

from engine.inputs.config import CandidateConfig, NodeConfig
from engine.stages.nodes import candidate_set, select_nodes


def test_strategies() -> None:
    ent = np.array([0.1, 0.9, 0.3, 0.8, 0.0, 0.5])
    cost = np.ones(6)
    assert select_nodes(NodeConfig(strategy="all"), ent, cost, 0).tolist() == [0, 1, 2, 3, 4, 5]
    assert select_nodes(NodeConfig(strategy="stride:2"), ent, cost, 0).tolist() == [0, 2, 4]
    assert select_nodes(NodeConfig(strategy="entropy:3"), ent, cost, 0).tolist() == [1, 3, 5]
    assert select_nodes(NodeConfig(strategy="entropy:99"), ent, cost, 0).tolist() == list(range(6))


def test_budget_skips_expensive_nodes_and_is_never_exceeded() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        ent = rng.random(n)
        cost = rng.integers(1, 100, n).astype(float)
        budget = float(rng.integers(1, 500))
        for strat in ("all", "stride:3", "entropy:5"):
            sel = select_nodes(NodeConfig(strategy=strat), ent, cost, budget)
            assert cost[sel].sum() <= budget
            # greedy in priority order: any eligible node left out no longer fits
            full = select_nodes(NodeConfig(strategy=strat), ent, cost, 0)
            left = budget - cost[sel].sum()
            skipped = [t for t in full if t not in set(sel.tolist())]
            assert all(cost[t] > left for t in skipped)


def test_candidate_set_union_and_plausibility() -> None:
    cfg = CandidateConfig(student_top_k=2, teacher_top_k=2)
    cs = candidate_set(5, [5, 7, 9], {"a": [7, 3], "b": [11, 5]}, cfg)
    assert cs.token_ids == [5, 7, 3, 11]
    assert cs.sources == ["sampled,student,b", "student,a", "a", "b"]
    filt = CandidateConfig(student_top_k=2, teacher_top_k=2, plausibility=0.05)
    p = {5: 0.01, 7: 0.02, 3: 0.001, 11: 0.001}
    q = {"a": {7: 0.3, 3: 0.01}, "b": {11: 0.02, 5: 0.5}}
    cs = candidate_set(5, [5, 7], {"a": [7, 3], "b": [11, 5]}, filt, p, q)
    assert cs.token_ids == [5, 7]  # sampled always kept; 3 and 11 implausible everywhere
    none = candidate_set(5, [5, 7], {"a": [3]}, filt, {5: 0.9, 7: 0.001, 3: 0.002},
                         {"a": {3: 0.001}})
    assert none.token_ids == [5, 3]  # at least one other candidate survives: the likeliest
