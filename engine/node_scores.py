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

    s: np.ndarray  # (M, K)
    n: np.ndarray
    s_half: np.ndarray
    n_half: np.ndarray
    s_hat: np.ndarray
    s_lo: np.ndarray
    s_hi: np.ndarray
    v_hat: np.ndarray  # (M,)
    g: np.ndarray  # (M, K)
    g_zero_share: np.ndarray  # (M,)
    point: dict[str, np.ndarray]  # gain, cos, cos_c, beyond, reason: (T, F, M)
    lo: dict[str, np.ndarray]  # cos, beyond, gain: (T, F, M)
    hi: dict[str, np.ndarray]
    advantage: np.ndarray  # (T, M)
    advantage_lo: np.ndarray
    advantage_hi: np.ndarray
    halves: dict[str, np.ndarray]  # advantage_a/_b (T, M), beyond_a/_b (T, M) for the best signal
    best_index: np.ndarray  # (M,) index into teachers, -1 when undefined
    best_prob: np.ndarray  # (M,)


def best_signal(families: Sequence[str]) -> str:
    """Signal that ranks teachers: reverse KL, else the first non-sampled family."""
    if "rkl" in families:
        return "rkl"
    return next((f for f in families if f != "sampled"), families[0])


def score_nodes(stats: NodeStats, s: np.ndarray, n: np.ndarray, s_half: np.ndarray,
                n_half: np.ndarray, teachers: Sequence[str], is_control: Sequence[bool],
                families: Sequence[str], *, draws: int, seed: int, question_id: str,
                rollout: int) -> NodeScores:
    """Point scores, Jeffreys-draw intervals, labels' inputs, best teacher and halves."""
    mask = stats.mask
    p = stats.p_samp
    with np.errstate(invalid="ignore", divide="ignore"):
        s_hat = np.where(mask, s / np.maximum(n, 1), 0.0)
    v_hat, g = maths.ideal_direction(p, s_hat, mask)
    T, F, M = len(teachers), len(families), len(stats.positions)
    d = np.stack([np.stack([stats.d_cand[(t, f)] for f in families]) for t in teachers])
    dn = np.stack([np.stack([stats.d_norm2[(t, f)] for f in families]) for t in teachers])
    hd = np.stack([np.stack([stats.hd[(t, f)] for f in families]) for t in teachers])
    q = np.stack([stats.q[t] for t in teachers])  # (T, M, K)
    point = maths.alignment(g, d, dn, hd, stats.h_cand, stats.h_norm2, mask)
    advantage = maths.teacher_advantage(q, s_hat, v_hat, mask)

    rng = generator(sequence_key(seed, "bootstrap", question_id, rollout))
    s_draws = maths.jeffreys_draws(s, np.maximum(n, 1), draws, rng)  # (B, M, K)
    s_lo, s_hi = maths.interval(s_draws)
    lo = {k: np.full((T, F, M), np.nan) for k in ("cos", "beyond", "gain")}
    hi = {k: np.full((T, F, M), np.nan) for k in ("cos", "beyond", "gain")}
    adv_lo, adv_hi = np.full((T, M), np.nan), np.full((T, M), np.nan)
    gz = np.zeros(M)
    best_idx, best_prob = np.full(M, -1), np.full(M, np.nan)
    fb = list(families).index(best_signal(families))
    eligible = ~np.asarray(is_control, dtype=bool)
    for a in range(0, M, NODE_BLOCK):
        sl = slice(a, min(M, a + NODE_BLOCK))
        sb = s_draws[:, sl]
        v_b, g_b = maths.ideal_direction(p[sl], sb, mask[sl])  # (B, m), (B, m, K)
        gz[sl] = maths.g_zero_share(g_b)
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
    halves = maths.crossfit_halves(p, mask, s, n, s_half, n_half, q, d[:, fb], dn[:, fb],
                                   hd[:, fb], stats.h_cand, stats.h_norm2)
    return NodeScores(s, n, s_half, n_half, s_hat, s_lo, s_hi, v_hat, g, gz, point, lo, hi,
                      advantage, adv_lo, adv_hi, halves, best_idx, best_prob)
