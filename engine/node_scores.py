"""From a rollout's node statistics and continuation outcomes to the stored score rows.

Everything here is node-level (the candidate set only), vectorised over teachers, signals,
nodes and Jeffreys draws; nodes are processed in blocks to bound the (B, T, F, M, K) buffers.
The same draws serve every teacher and signal (paired), which is what makes best-teacher
probabilities and margins meaningful.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine import maths
from engine.rng import generator, sequence_key
from engine.scoring import NodeStats

NODE_BLOCK = 128


@dataclass
class NodeScores:
    """Per-node results for one rollout; arrays indexed [teacher, signal, node] etc."""

    s: np.ndarray  # (M, K) successes among judged continuations
    n: np.ndarray  # (M, K) judged continuations (1 for a deterministic candidate)
    deterministic: np.ndarray  # (M, K) bool: outcome certain, verified once
    s_hat: np.ndarray  # (M, K); NaN for a real candidate with nothing judged
    s_lo: np.ndarray
    s_hi: np.ndarray
    v_hat: np.ndarray  # (M,)
    g: np.ndarray  # (M, K)
    node_reason: np.ndarray  # (M,) object: no_signal | unverifiable | None
    point: dict[str, np.ndarray]  # gain, cos, cos_c, beyond, reason: (T, F, M)
    lo: dict[str, np.ndarray]  # cos, beyond, gain: (T, F, M); NaN wherever the point is NaN
    hi: dict[str, np.ndarray]
    advantage: np.ndarray  # (T, M)
    advantage_lo: np.ndarray
    advantage_hi: np.ndarray
    halves: dict[str, np.ndarray]  # advantage_a/_b, beyond_a/_b (T, M) under the rank signal
    best_index: np.ndarray  # (M,) index into teachers, -1 when undefined
    best_prob: np.ndarray  # (M,)


def rank_signal(families: Sequence[str]) -> str:
    """Signal that ranks teachers: reverse KL, else the first non-sampled family.

    Recorded in meta (``rank_signal``) so every table and summary that ranks says which.
    """
    if "rkl" in families:
        return "rkl"
    return next((f for f in families if f != "sampled"), families[0])


def node_draws(s: np.ndarray, n: np.ndarray, deterministic: np.ndarray, positions: np.ndarray,
               draws: int, *, seed: int, question_id: str, rollout: int) -> np.ndarray:
    """Jeffreys draws (B, M, K), keyed per node: a node's draws do not depend on which other
    nodes of its rollout were probed (method.md: keyed per sequence and node)."""
    out = np.empty((draws, *s.shape))
    for i, pos in enumerate(np.asarray(positions).tolist()):
        rng = generator(sequence_key(seed, "bootstrap", question_id, rollout, int(pos)))
        out[:, i] = maths.jeffreys_draws(s[i], n[i], draws, rng, deterministic[i])
    return out


def score_nodes(stats: NodeStats, s: np.ndarray, n: np.ndarray, s_half: np.ndarray,
                n_half: np.ndarray, deterministic: np.ndarray, teachers: Sequence[str],
                is_control: Sequence[bool], families: Sequence[str], *, draws: int, seed: int,
                question_id: str, rollout: int, temperature: float = 1.0) -> NodeScores:
    """Point scores, Jeffreys-draw intervals, labels' inputs, best teacher and halves.

    A NULL point score has a NULL interval. A node where some candidate has no judged
    continuation has no S at all: every value there is NULL, reason ``unverifiable``.
    """
    mask = stats.mask
    p = stats.p_samp
    judged = n > 0
    unverifiable = (mask & ~judged).any(-1)  # (M,)
    with np.errstate(invalid="ignore", divide="ignore"):
        s_hat = np.where(mask, np.where(judged, s / np.maximum(n, 1), np.nan), 0.0)
    v_hat, g = maths.ideal_direction(p, s_hat, mask, temperature)
    T, F, M = len(teachers), len(families), len(stats.positions)
    d = np.stack([np.stack([stats.d_cand[(t, f)] for f in families]) for t in teachers])
    dn = np.stack([np.stack([stats.d_norm2[(t, f)] for f in families]) for t in teachers])
    hd = np.stack([np.stack([stats.hd[(t, f)] for f in families]) for t in teachers])
    q = np.stack([stats.q[t] for t in teachers])  # (T, M, K)
    point = maths.alignment(g, d, dn, hd, stats.h_cand, stats.h_norm2, mask)
    advantage = maths.teacher_advantage(q, s_hat, v_hat, mask)

    s_draws = node_draws(s, n, deterministic & mask, stats.positions, draws, seed=seed,
                         question_id=question_id, rollout=rollout)  # (B, M, K)
    s_lo, s_hi = maths.interval(s_draws)
    lo = {k: np.full((T, F, M), np.nan) for k in ("cos", "beyond", "gain")}
    hi = {k: np.full((T, F, M), np.nan) for k in ("cos", "beyond", "gain")}
    adv_lo, adv_hi = np.full((T, M), np.nan), np.full((T, M), np.nan)
    best_idx, best_prob = np.full(M, -1), np.full(M, np.nan)
    fb = list(families).index(rank_signal(families))
    eligible = ~np.asarray(is_control, dtype=bool)
    for a in range(0, M, NODE_BLOCK):
        sl = slice(a, min(M, a + NODE_BLOCK))
        sb = s_draws[:, sl]
        v_b, g_b = maths.ideal_direction(p[sl], sb, mask[sl], temperature)  # (B, m), (B, m, K)
        al = maths.alignment(g_b[:, None, None], d[:, :, sl], dn[:, :, sl], hd[:, :, sl],
                             stats.h_cand[sl], stats.h_norm2[sl], mask[sl])  # (B, T, F, m)
        for k in lo:
            lo[k][:, :, sl], hi[k][:, :, sl] = maths.interval(al[k])
        adv_b = maths.teacher_advantage(q[:, sl][None], sb[:, None], v_b[:, None],
                                        mask[sl])  # (B, T, m)
        adv_lo[:, sl], adv_hi[:, sl] = maths.interval(adv_b)
        bi, bp = maths.best_teacher(point["beyond"][:, fb, sl].T,
                                    np.moveaxis(al["beyond"][:, :, fb], 1, -1), eligible)
        best_idx[sl], best_prob[sl] = bi, bp
    halves = maths.crossfit_halves(
        p, mask, maths.half_estimates(s, n, s_half, n_half, mask, deterministic), q, d[:, fb],
        dn[:, fb], hd[:, fb], stats.h_cand, stats.h_norm2, temperature)

    # unverifiable nodes: nothing is known there
    if unverifiable.any():
        v_hat = np.where(unverifiable, np.nan, v_hat)
        g = np.where(unverifiable[:, None], np.nan, g)
        point["gain"] = np.where(unverifiable, np.nan, point["gain"])
        for k in ("cos", "cos_c", "beyond"):
            point[k] = np.where(unverifiable, np.nan, point[k])
        point["reason"] = np.where(unverifiable, maths.UNVERIFIABLE,
                                   point["reason"]).astype(np.int8)
        advantage = np.where(unverifiable, np.nan, advantage)
        halves = {k: np.where(unverifiable, np.nan, v) for k, v in halves.items()}
        best_idx = np.where(unverifiable, -1, best_idx)
        best_prob = np.where(unverifiable, np.nan, best_prob)
    for k in lo:  # a NULL score has a NULL interval
        undefined = np.isnan(point[k])
        lo[k], hi[k] = np.where(undefined, np.nan, lo[k]), np.where(undefined, np.nan, hi[k])
    adv_lo = np.where(np.isnan(advantage), np.nan, adv_lo)
    adv_hi = np.where(np.isnan(advantage), np.nan, adv_hi)
    node_reason = np.full(M, None, dtype=object)
    node_reason[(g == 0).all(-1)] = "no_signal"
    node_reason[unverifiable] = "unverifiable"
    return NodeScores(s, n, deterministic, s_hat, s_lo, s_hi, v_hat, g, node_reason, point, lo,
                      hi, advantage, adv_lo, adv_hi, halves, best_idx, best_prob)
