"""The node-scoring stage the runner calls (engine.node_scores.score_nodes), checked against
independent per-node computations that never see padding, other nodes or other teachers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import maths
from engine.node_scores import score_nodes
from engine.scoring import NodeStats

V = 10
TEACHERS = ("good", "noisy", "ctrl")
CONTROLS = (False, False, True)
FAMILIES = ("rkl", "fkl")


def _stats(cand_lists: list[list[int]], seed: int = 0) -> NodeStats:
    """NodeStats from real full-vocabulary maths on random logits, candidates padded to K."""
    rng = np.random.default_rng(seed)
    m = len(cand_lists)
    k = max(len(c) for c in cand_lists)
    cand_ids = np.full((m, k), -1)
    for i, c in enumerate(cand_lists):
        cand_ids[i, : len(c)] = c
    mask = cand_ids >= 0
    logp = torch.log_softmax(torch.from_numpy(rng.normal(0, 1.5, (m, V))), -1)
    cidx = torch.from_numpy(cand_ids)
    h, h_cand, h2 = maths.sharpening_stats(logp, cidx)
    gather = maths._gather_cand  # the engine's own padded gather
    out = NodeStats(np.arange(m) * 3 + 1, cand_ids, mask,
                    gather(logp.exp(), cidx).numpy() * mask, h_cand.numpy(), h2.numpy())
    for t in TEACHERS:
        logq = torch.log_softmax(torch.from_numpy(rng.normal(0, 1.5, (m, V))), -1)
        out.q[t] = gather(logq.exp(), cidx).numpy() * mask
        for f in FAMILIES:
            st = maths.direction_stats(f, logp, logq, cidx, h=h)
            out.d_cand[(t, f)] = st.d_cand.numpy() * mask
            out.d_norm2[(t, f)] = st.d_norm2.numpy()
            out.hd[(t, f)] = st.hd.numpy()
    return out


def _counts(stats: NodeStats, n_cont: int, seed: int = 1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    shape = stats.mask.shape
    n = np.where(stats.mask, n_cont, 0)
    s_half = np.where(stats.mask, rng.integers(0, n_cont // 2 + 1, shape), 0)
    s = s_half + np.where(stats.mask, rng.integers(0, n_cont - n_cont // 2 + 1, shape), 0)
    n_half = np.where(stats.mask, n_cont // 2, 0)
    return s, n, s_half, n_half, np.zeros(shape, bool)


def _score(stats: NodeStats, counts: tuple[np.ndarray, ...], **kw: object) -> object:
    return score_nodes(stats, *counts, TEACHERS, CONTROLS, FAMILIES, draws=200, seed=0,
                       question_id="q", rollout=0, **kw)


def test_halves_are_defined_at_nodes_with_padded_candidate_arrays() -> None:
    """Nodes of different |C| in one rollout: every half is finite and equals the same node
    scored alone, on its own candidates only (the revision-1 bug: NaN wherever padded)."""
    lists = [[1, 2, 3, 4], [5, 6], [0, 7, 8]]
    stats = _stats(lists)
    counts = _counts(stats, 12)
    sc = _score(stats, counts)
    for key in ("advantage_a", "advantage_b", "beyond_a", "beyond_b"):
        assert np.isfinite(sc.halves[key][:, :2]).any(), key
    assert np.isfinite(sc.halves["advantage_a"]).all() and np.isfinite(sc.halves["advantage_b"])\
        .all()
    s, n, s_half, n_half, _ = counts
    fb = 0  # rkl ranks
    for i, c in enumerate(lists):
        k = len(c)
        mask = np.ones((1, k), bool)
        p = stats.p_samp[i : i + 1, :k]
        for half, s_hat in (("a", s_half[i, :k] / n_half[i, :k]),
                            ("b", (s[i, :k] - s_half[i, :k]) / (n[i, :k] - n_half[i, :k]))):
            v, g = maths.ideal_direction(p, s_hat[None], mask)
            for ti, t in enumerate(TEACHERS):
                adv = maths.teacher_advantage(stats.q[t][i : i + 1, :k], s_hat[None], v, mask)
                key = (t, FAMILIES[fb])
                beyond = maths.alignment(
                    g, stats.d_cand[key][i : i + 1, :k], stats.d_norm2[key][i : i + 1],
                    stats.hd[key][i : i + 1], stats.h_cand[i : i + 1, :k],
                    stats.h_norm2[i : i + 1], mask)["beyond"]
                assert sc.halves[f"advantage_{half}"][ti, i] == pytest.approx(adv[0], abs=1e-14)
                np.testing.assert_allclose(sc.halves[f"beyond_{half}"][ti, i], beyond[0],
                                           atol=1e-12)


def test_draws_are_keyed_per_node() -> None:
    """A node's interval does not depend on which other nodes of its rollout were probed."""
    lists = [[1, 2, 3], [4, 5], [6, 7, 8]]
    stats = _stats(lists)
    counts = _counts(stats, 8)
    full = _score(stats, counts)
    one = NodeStats(stats.positions[1:2], stats.cand_ids[1:2, :2], stats.mask[1:2, :2],
                    stats.p_samp[1:2, :2], stats.h_cand[1:2, :2], stats.h_norm2[1:2])
    for t in TEACHERS:
        one.q[t] = stats.q[t][1:2, :2]
        for f in FAMILIES:
            one.d_cand[(t, f)] = stats.d_cand[(t, f)][1:2, :2]
            one.d_norm2[(t, f)] = stats.d_norm2[(t, f)][1:2]
            one.hd[(t, f)] = stats.hd[(t, f)][1:2]
    alone = _score(one, tuple(c[1:2, :2] for c in counts))
    assert np.array_equal(alone.s_lo[0], full.s_lo[1, :2])
    for k in ("cos", "gain"):
        np.testing.assert_array_equal(alone.lo[k][:, :, 0], full.lo[k][:, :, 1])


def test_null_scores_have_null_intervals() -> None:
    stats = _stats([[1, 2, 3], [4, 5, 6]])
    s, n, s_half, n_half, det = _counts(stats, 8)
    s[1] = np.where(stats.mask[1], 3, 0)  # node 1: every candidate 3/8 -> no signal
    sc = _score(stats, (s, n, s_half, n_half, det))
    assert sc.node_reason.tolist() == [None, "no_signal"]
    for k in ("cos", "beyond"):
        assert np.isnan(sc.point[k][:, :, 1]).all()
        assert np.isnan(sc.lo[k][:, :, 1]).all() and np.isnan(sc.hi[k][:, :, 1]).all()
    assert maths.label(sc.lo["cos"][:, :, 1], sc.hi["cos"][:, :, 1]).tolist() == \
        [[None] * len(FAMILIES)] * len(TEACHERS)
    assert np.isfinite(sc.lo["cos"][:2, 0, 0]).all()  # node 0 is scored


def test_unverifiable_candidate_nulls_its_node() -> None:
    stats = _stats([[1, 2, 3], [4, 5, 6]])
    s, n, s_half, n_half, det = _counts(stats, 8)
    s[0, 1] = n[0, 1] = s_half[0, 1] = n_half[0, 1] = 0  # nothing judged for one candidate
    sc = _score(stats, (s, n, s_half, n_half, det))
    assert sc.node_reason[0] == "unverifiable"
    assert np.isnan(sc.v_hat[0]) and np.isnan(sc.g[0]).all() and np.isnan(sc.s_hat[0, 1])
    for k in ("gain", "cos", "cos_c", "beyond"):
        assert np.isnan(sc.point[k][:, :, 0]).all(), k
    assert (maths.reason_names(sc.point["reason"][:, :, 0]) == "unverifiable").all()
    assert np.isnan(sc.advantage[:, 0]).all() and sc.best_index[0] == -1
    assert np.isfinite(sc.v_hat[1]) and sc.node_reason[1] is None


def test_deterministic_candidates_have_no_spread_and_temperature_scales_g() -> None:
    stats = _stats([[1, 2, 3], [4, 5, 6]])
    s, n, s_half, n_half, det = _counts(stats, 8)
    det[:, 2] = True
    s[:, 2], n[:, 2], s_half[:, 2], n_half[:, 2] = 0, 1, 0, 1
    sc = _score(stats, (s, n, s_half, n_half, det))
    assert (sc.s_lo[:, 2] == 0).all() and (sc.s_hi[:, 2] == 0).all()
    assert (sc.s_hi[:, :2] > sc.s_lo[:, :2]).all()
    hot = _score(stats, (s, n, s_half, n_half, det), temperature=0.5)
    np.testing.assert_allclose(hot.g, 2 * sc.g)
    np.testing.assert_allclose(hot.point["gain"], 2 * sc.point["gain"])
    np.testing.assert_allclose(hot.point["cos"], sc.point["cos"])
