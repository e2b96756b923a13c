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
from engine.rng import generator
from engine.stages.context import QuestionContext
from engine.stages.continuations import ContinuationResult
from engine.stages.nodes import CandidateSet
from engine.stages.scoring import NodeStats

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
    plausible: np.ndarray  # (M, K) bool: C+
    stakes: np.ndarray  # (M,) max - min of S over C+ (NaN when unverifiable)
    stakes_lo: np.ndarray
    stakes_hi: np.ndarray
    decisive: np.ndarray  # (M,) bool: stakes >= tau_stakes
    g_share: np.ndarray  # (M,) |Pg|^2 / |g|^2
    cos_sharp: np.ndarray  # (F, M) the sharpened reference's cosine (edge = cos - cos_sharp)
    point: dict[str, np.ndarray]  # gain, cos, cos_c, edge, beyond, d_share, reason: (T, F, M)
    lo: dict[str, np.ndarray]  # cos, edge, beyond, gain: (T, F, M); NaN wherever point is NaN
    hi: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]  # cos, edge, beyond: (T, F, M) object helps|hurts|neutral|None
    advantage: np.ndarray  # (T, M)
    advantage_lo: np.ndarray
    advantage_hi: np.ndarray
    halves: dict[str, np.ndarray]  # advantage_a/_b, edge_a/_b (T, M) under the rank signal
    best_index: np.ndarray  # (M,) index into teachers, -1 without a confident leader
    best_prob: np.ndarray  # (M,) share of draws in which the point leader leads by the margin
    best_margin: np.ndarray  # (M,) point leader minus runner-up (rank-signal edge)
    best_reason: np.ndarray  # (M,) object: not_decisive | tie | no_teacher | unverifiable | None


@dataclass
class OutcomeCounts:
    """Continuation outcomes as (M, K) arrays in the node pass's candidate order; padded slots
    are 0 / False. What the scores need of a `ContinuationResult`, as arrays."""

    s: np.ndarray  # successes among judged continuations
    n: np.ndarray  # judged continuations
    s_half: np.ndarray  # the same over the first half (j < N // 2)
    n_half: np.ndarray
    deterministic: np.ndarray  # bool: outcome certain, verified once

    @classmethod
    def of(cls, result: ContinuationResult, stats: NodeStats,
           cands: dict[int, CandidateSet]) -> OutcomeCounts:
        """Read each node's candidates in the order `stats` (the node pass) holds them."""
        shape = stats.cand_ids.shape
        s, n, s_half, n_half = (np.zeros(shape) for _ in range(4))
        det = np.zeros(shape, dtype=bool)
        for i, pos in enumerate(stats.positions.tolist()):
            for j, token in enumerate(cands[int(pos)].token_ids):
                o = result.outcomes[(int(pos), token)]
                s[i, j], n[i, j], s_half[i, j], n_half[i, j] = o.s, o.n, o.s_half, o.n_half
                det[i, j] = o.deterministic
        return cls(s, n, s_half, n_half, det)


def rank_signal(families: Sequence[str]) -> str:
    """Signal that ranks teachers: reverse KL, else the first non-sampled family.

    Recorded in meta (``rank_signal``) so every table and summary that ranks says which.
    """
    if "rkl" in families:
        return "rkl"
    return next((f for f in families if f != "sampled"), families[0])


def node_draws(ctx: QuestionContext, s: np.ndarray, n: np.ndarray, deterministic: np.ndarray,
               positions: np.ndarray, *, rollout: int) -> np.ndarray:
    """Jeffreys draws (B, M, K), keyed per node: a node's draws do not depend on which other
    nodes of its rollout were probed (method.md: keyed per sequence and node)."""
    draws = ctx.bootstrap_draws
    out = np.empty((draws, *s.shape))
    for i, pos in enumerate(np.asarray(positions).tolist()):
        rng = generator(ctx.key("bootstrap", rollout, int(pos)))
        out[:, i] = maths.jeffreys_draws(s[i], n[i], draws, rng, deterministic[i])
    return out


def score_nodes(ctx: QuestionContext, stats: NodeStats, counts: OutcomeCounts,
                sampled: np.ndarray, is_control: Sequence[bool], *, rollout: int) -> NodeScores:
    """Point scores, calibrated intervals, stakes, labels, best teacher and halves.

    ``sampled`` holds the sampled token id of each node (M,), ``is_control`` one flag per
    teacher of ``ctx.teachers`` (a teacher skipped at this rollout counts as a control there).
    The context gives the signals, draws, keys, T and the score rules. A NULL point score has a
    NULL interval and no label. A node where some candidate has no judged continuation has no S
    at all: every value there is NULL, reason ``unverifiable``.
    """
    teachers, families = ctx.teachers, ctx.signals.families
    temperature, rules = ctx.sampling.temperature, ctx.scores
    s, n, s_half, n_half = counts.s, counts.n, counts.s_half, counts.n_half
    deterministic = counts.deterministic
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
    ref_d = np.stack([stats.ref_d_cand[f] for f in families])  # (F, M, K)
    ref_dn = np.stack([stats.ref_d_norm2[f] for f in families])  # (F, M)
    q = np.stack([stats.q[t] for t in teachers])  # (T, M, K)
    eligible = ~np.asarray(is_control, dtype=bool)

    is_sampled = stats.cand_ids == np.asarray(sampled)[:, None]
    plausible = maths.plausible_set(p, q[eligible], is_sampled, mask, rules.plausible)
    stakes = maths.stakes(s_hat, plausible)
    cos_sharp = maths.sharpened_cos(g, ref_d, ref_dn, mask)  # (F, M)
    point = maths.alignment(g, d, dn, hd, stats.h_cand, stats.h_norm2, mask, cos_sharp,
                            rules.rho)
    advantage = maths.teacher_advantage(q, s_hat, v_hat, mask)

    s_draws = node_draws(ctx, s, n, deterministic & mask, stats.positions,
                         rollout=rollout)  # (B, M, K)
    s_lo, s_hi = maths.interval(s_draws, *maths.bounds(maths.LEVELS["s"]))
    stakes_lo, stakes_hi = maths.stakes_interval(
        *maths.interval(s_draws, *maths.bounds(maths.STAKES_CANDIDATE_LEVEL)), plausible)
    decisive = ~unverifiable & (np.nan_to_num(stakes, nan=-1.0) >= rules.tau_stakes)
    keys = ("cos", "edge", "beyond", "gain")
    lo = {k: np.full((T, F, M), np.nan) for k in keys}
    hi = {k: np.full((T, F, M), np.nan) for k in keys}
    adv_lo, adv_hi = np.full((T, M), np.nan), np.full((T, M), np.nan)
    best = {"index": np.full(M, -1), "prob": np.full(M, np.nan),
            "point_margin": np.full(M, np.nan), "reason": np.zeros(M, np.int8)}
    fb = list(families).index(rank_signal(families))
    for a in range(0, M, NODE_BLOCK):
        sl = slice(a, min(M, a + NODE_BLOCK))
        sb = s_draws[:, sl]
        v_b, g_b = maths.ideal_direction(p[sl], sb, mask[sl], temperature)  # (B, m), (B, m, K)
        ref_b = maths.sharpened_cos(g_b[:, None], ref_d[:, sl], ref_dn[:, sl],
                                    mask[sl])  # (B, F, m)
        al = maths.alignment(g_b[:, None, None], d[:, :, sl], dn[:, :, sl], hd[:, :, sl],
                             stats.h_cand[sl], stats.h_norm2[sl], mask[sl], ref_b[:, None],
                             rules.rho)  # (B, T, F, m)
        for k in keys:
            lo[k][:, :, sl], hi[k][:, :, sl] = maths.interval(
                al[k], *maths.bounds(maths.LEVELS[k]))
        adv_b = maths.teacher_advantage(q[:, sl][None], sb[:, None], v_b[:, None],
                                        mask[sl])  # (B, T, m)
        adv_lo[:, sl], adv_hi[:, sl] = maths.interval(
            adv_b, *maths.bounds(maths.LEVELS["advantage"]))
        bt = maths.best_teacher(point["edge"][:, fb, sl].T,
                                np.moveaxis(al["edge"][:, :, fb], 1, -1), eligible,
                                decisive[sl], rules.margin, rules.leader_share)
        for k in best:
            best[k][sl] = bt[k]
    halves = maths.crossfit_halves(
        p, mask, maths.half_estimates(s, n, s_half, n_half, mask, deterministic), q, d[:, fb],
        dn[:, fb], hd[:, fb], stats.h_cand, stats.h_norm2, ref_d[fb], ref_dn[fb], temperature)

    # unverifiable nodes: nothing is known there
    if unverifiable.any():
        v_hat = np.where(unverifiable, np.nan, v_hat)
        g = np.where(unverifiable[:, None], np.nan, g)
        stakes = np.where(unverifiable, np.nan, stakes)
        stakes_lo = np.where(unverifiable, np.nan, stakes_lo)
        stakes_hi = np.where(unverifiable, np.nan, stakes_hi)
        cos_sharp = np.where(unverifiable, np.nan, cos_sharp)
        for k in ("gain", "cos", "cos_c", "edge", "beyond", "g_share", "d_share"):
            point[k] = np.where(unverifiable, np.nan, point[k])
        point["reason"] = np.where(unverifiable, maths.UNVERIFIABLE,
                                   point["reason"]).astype(np.int8)
        advantage = np.where(unverifiable, np.nan, advantage)
        halves = {k: np.where(unverifiable, np.nan, v) for k, v in halves.items()}
        best["prob"] = np.where(unverifiable, np.nan, best["prob"])
        best["point_margin"] = np.where(unverifiable, np.nan, best["point_margin"])
    for k in lo:  # a NULL score has a NULL interval
        undefined = np.isnan(point[k])
        lo[k], hi[k] = np.where(undefined, np.nan, lo[k]), np.where(undefined, np.nan, hi[k])
    labels = {k: maths.label(lo[k], hi[k], decisive, rules.epsilon)
              for k in ("cos", "edge", "beyond")}
    adv_lo = np.where(np.isnan(advantage), np.nan, adv_lo)
    adv_hi = np.where(np.isnan(advantage), np.nan, adv_hi)
    node_reason = np.full(M, None, dtype=object)
    node_reason[(g == 0).all(-1)] = "no_signal"
    node_reason[unverifiable] = "unverifiable"
    best_reason = np.array(maths.BEST_REASONS, dtype=object)[best["reason"].astype(np.int64)]
    best_reason[unverifiable] = "unverifiable"
    g_share = point.pop("g_share")
    if g_share.ndim > 1:
        g_share = g_share.reshape(-1, M)[0]
    return NodeScores(s, n, deterministic, s_hat, s_lo, s_hi, v_hat, g, node_reason, plausible,
                      stakes, stakes_lo, stakes_hi, decisive, g_share, cos_sharp, point, lo, hi,
                      labels, advantage, adv_lo, adv_hi, halves, best["index"], best["prob"],
                      best["point_margin"], best_reason)
