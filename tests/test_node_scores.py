"""The node-scoring stage engine.run calls (engine.stages.node_scores.score_nodes), checked against
independent per-node computations that never see padding, other nodes or other teachers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import maths
from engine.inputs.config import SamplingConfig, ScoreConfig, SignalConfig
from engine.stages.context import QuestionContext
from engine.stages.node_scores import NodeScores, OutcomeCounts, score_nodes
from engine.stages.scoring import NodeStats

V = 10
TEACHERS = ("good", "noisy", "ctrl")
CONTROLS = (False, False, True)
FAMILIES = ("rkl", "fkl")


def _stats(cand_lists: list[list[int]], seed: int = 0) -> NodeStats:
    """NodeStats from real full-vocabulary maths on random logits, candidates padded to K."""
    rng = np.random.default_rng(seed)
    z = torch.from_numpy(rng.normal(0, 1.5, (len(cand_lists), V)))
    logq = {t: torch.log_softmax(torch.from_numpy(rng.normal(0, 1.5, (len(cand_lists), V))), -1)
            for t in TEACHERS}
    return _stats_from(z, logq, cand_lists)


def _stats_from(z: torch.Tensor, logq: dict[str, torch.Tensor],
                cand_lists: list[list[int]]) -> NodeStats:
    """NodeStats as the scorer builds them: the engine's own full-vocabulary maths and gather;
    the edge's reference is the student sharpened at T = 0.5 (the runner's default)."""
    m = len(cand_lists)
    k = max(len(c) for c in cand_lists)
    cand_ids = np.full((m, k), -1)
    for i, c in enumerate(cand_lists):
        cand_ids[i, : len(c)] = c
    mask = cand_ids >= 0
    logp = torch.log_softmax(z, -1)
    cidx = torch.from_numpy(cand_ids)
    h, h_cand, h2 = maths.sharpening_stats(logp, cidx)
    gather = maths._gather_cand  # the engine's own padded gather
    out = NodeStats(np.arange(m) * 3 + 1, cand_ids, mask,
                    gather(logp.exp(), cidx).numpy() * mask, h_cand.numpy(), h2.numpy())
    for t, lq in logq.items():
        out.q[t] = gather(lq.exp(), cidx).numpy() * mask
        for f in FAMILIES:
            st = maths.direction_stats(f, logp, lq, cidx, h=h)
            out.d_cand[(t, f)] = st.d_cand.numpy() * mask
            out.d_norm2[(t, f)] = st.d_norm2.numpy()
            out.hd[(t, f)] = st.hd.numpy()
    sharp = torch.log_softmax(z / 0.5, -1)  # the sharpened student, the edge's reference
    for f in FAMILIES:
        st = maths.direction_stats(f, logp, sharp, cidx, h=h)
        out.ref_d_cand[f], out.ref_d_norm2[f] = st.d_cand.numpy() * mask, st.d_norm2.numpy()
    return out


def _counts(stats: NodeStats, n_cont: int, seed: int = 1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    shape = stats.mask.shape
    n = np.where(stats.mask, n_cont, 0)
    s_half = np.where(stats.mask, rng.integers(0, n_cont // 2 + 1, shape), 0)
    s = s_half + np.where(stats.mask, rng.integers(0, n_cont - n_cont // 2 + 1, shape), 0)
    n_half = np.where(stats.mask, n_cont // 2, 0)
    return s, n, s_half, n_half, np.zeros(shape, bool)


def _context(teachers: tuple[str, ...] = TEACHERS, temperature: float = 1.0,
             rules: ScoreConfig | None = None) -> QuestionContext:
    """A model-free context: only the settings node scoring reads."""
    return QuestionContext("q", seed=0, teachers=teachers,
                           sampling=SamplingConfig(temperature=temperature),
                           signals=SignalConfig(families=FAMILIES), scores=rules or ScoreConfig(),
                           bootstrap_draws=200)


def _score(stats: NodeStats, counts: tuple[np.ndarray, ...], temperature: float = 1.0,
           rules: ScoreConfig | None = None) -> NodeScores:
    sampled = stats.cand_ids[:, 0]  # the first candidate was sampled
    return score_nodes(_context(temperature=temperature, rules=rules), stats,
                       OutcomeCounts(*counts), sampled, CONTROLS, rollout=0)


def test_halves_are_defined_at_nodes_with_padded_candidate_arrays() -> None:
    """Nodes of different |C| in one rollout: every half is finite and equals the same node
    scored alone, on its own candidates only (the revision-1 bug: NaN wherever padded)."""
    lists = [[1, 2, 3, 4], [5, 6], [0, 7, 8]]
    stats = _stats(lists)
    counts = _counts(stats, 12)
    sc = _score(stats, counts)
    for key in ("advantage_a", "advantage_b", "edge_a", "edge_b"):
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
                # edge by hand: cos(g, d) - cos(g, d_sharp) on this node's own candidates
                d_t = stats.d_cand[key][i, :k]
                d_ref = stats.ref_d_cand[FAMILIES[fb]][i, :k]
                cos_t = (g[0] @ d_t) / np.sqrt((g[0] @ g[0]) * stats.d_norm2[key][i])
                cos_ref = (g[0] @ d_ref) / np.sqrt(
                    (g[0] @ g[0]) * stats.ref_d_norm2[FAMILIES[fb]][i])
                assert sc.halves[f"advantage_{half}"][ti, i] == pytest.approx(adv[0], abs=1e-14)
                np.testing.assert_allclose(sc.halves[f"edge_{half}"][ti, i], cos_t - cos_ref,
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
    for f in FAMILIES:
        one.ref_d_cand[f] = stats.ref_d_cand[f][1:2, :2]
        one.ref_d_norm2[f] = stats.ref_d_norm2[f][1:2]
    alone = _score(one, tuple(c[1:2, :2] for c in counts))
    assert np.array_equal(alone.s_lo[0], full.s_lo[1, :2])
    for k in ("cos", "edge", "gain"):
        np.testing.assert_array_equal(alone.lo[k][:, :, 0], full.lo[k][:, :, 1])
    assert alone.stakes_lo[0] == full.stakes_lo[1] and alone.stakes_hi[0] == full.stakes_hi[1]


def test_null_scores_have_null_intervals() -> None:
    stats = _stats([[1, 2, 3], [4, 5, 6]])
    s, n, s_half, n_half, det = _counts(stats, 8)
    s[1] = np.where(stats.mask[1], 3, 0)  # node 1: every candidate 3/8 -> no signal
    sc = _score(stats, (s, n, s_half, n_half, det))
    assert sc.node_reason.tolist() == [None, "no_signal"]
    for k in ("cos", "edge", "beyond"):
        assert np.isnan(sc.point[k][:, :, 1]).all()
        assert np.isnan(sc.lo[k][:, :, 1]).all() and np.isnan(sc.hi[k][:, :, 1]).all()
        assert sc.labels[k][:, :, 1].tolist() == [[None] * len(FAMILIES)] * len(TEACHERS)
    assert sc.stakes[1] == 0 and not sc.decisive[1] and sc.best_index[1] == -1
    assert np.isfinite(sc.lo["cos"][:2, 0, 0]).all()  # node 0 is scored


def test_unverifiable_candidate_nulls_its_node() -> None:
    stats = _stats([[1, 2, 3], [4, 5, 6]])
    s, n, s_half, n_half, det = _counts(stats, 8)
    s[0, 1] = n[0, 1] = s_half[0, 1] = n_half[0, 1] = 0  # nothing judged for one candidate
    sc = _score(stats, (s, n, s_half, n_half, det))
    assert sc.node_reason[0] == "unverifiable"
    assert np.isnan(sc.v_hat[0]) and np.isnan(sc.g[0]).all() and np.isnan(sc.s_hat[0, 1])
    for k in ("gain", "cos", "cos_c", "edge", "beyond"):
        assert np.isnan(sc.point[k][:, :, 0]).all(), k
    assert np.isnan(sc.stakes[0]) and not sc.decisive[0] and sc.best_reason[0] == "unverifiable"
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


def _with_sharpened_teacher(stats: NodeStats) -> NodeStats:
    """Replace the 'ctrl' teacher by the sharpened reference itself (as the runner does when
    ctrl_sharpened is scored: its arrays are the reference's)."""
    for f in FAMILIES:
        stats.d_cand[("ctrl", f)] = stats.ref_d_cand[f]
        stats.d_norm2[("ctrl", f)] = stats.ref_d_norm2[f]
    return stats


def test_edge_matches_autograd_and_the_sharpened_control_scores_zero() -> None:
    """edge = cos(g, d) - cos(g, d_sharp) with g, d and d_sharp from autograd over the full
    vocabulary (tokens outside C valued at V_hat); the sharpened control's edge is exactly 0."""
    lists = [[1, 2, 3, 4], [5, 6], [0, 7, 8]]
    stats = _with_sharpened_teacher(_stats(lists, seed=4))
    counts = _counts(stats, 12, seed=5)
    sc = _score(stats, counts)
    rng = np.random.default_rng(4)  # replay _stats' draws to get the logits back
    z = torch.from_numpy(rng.normal(0, 1.5, (len(lists), V)))
    logq = {t: torch.log_softmax(torch.from_numpy(rng.normal(0, 1.5, (len(lists), V))), -1)
            for t in TEACHERS}
    s, n = counts[0], counts[1]
    fi = FAMILIES.index("rkl")
    for i, c in enumerate(lists):
        if sc.node_reason[i] is not None:
            continue
        s_hat = np.zeros(V)
        p_np = torch.softmax(z[i], -1).numpy()
        s_c = s[i, : len(c)] / n[i, : len(c)]
        v_hat = (p_np[c] * s_c).sum() / p_np[c].sum()
        s_hat[:] = v_hat
        s_hat[c] = s_c
        zz = z[i].clone().requires_grad_(True)
        (torch.softmax(zz, -1) * torch.from_numpy(s_hat)).sum().backward()
        g = zz.grad.numpy()

        def rkl_dir(lq: torch.Tensor, i: int = i) -> np.ndarray:
            zz = z[i].clone().requires_grad_(True)
            lp = torch.log_softmax(zz, -1)
            (-(lp.exp() * (lp - lq)).sum()).backward()
            return zz.grad.numpy()

        def cos(a: np.ndarray, b: np.ndarray) -> float:
            return float(a @ b / np.sqrt((a @ a) * (b @ b)))

        ref = cos(g, rkl_dir(torch.log_softmax(z[i] / 0.5, -1)))
        for ti, t in enumerate(TEACHERS[:2]):
            want = cos(g, rkl_dir(logq[t][i])) - ref
            assert sc.point["edge"][ti, fi, i] == pytest.approx(want, abs=1e-9)
        assert sc.cos_sharp[fi, i] == pytest.approx(ref, abs=1e-9)
    ctrl = TEACHERS.index("ctrl")
    defined = ~np.isnan(sc.point["cos"][ctrl])
    assert defined.any() and (sc.point["edge"][ctrl][defined] == 0).all()
    assert (sc.lo["edge"][ctrl][defined] == 0).all() and (sc.hi["edge"][ctrl][defined] == 0).all()
    assert not np.isin(sc.labels["edge"][ctrl], ["helps", "hurts"]).any()


def test_stakes_decisive_labels_and_best_teacher_follow_the_rules() -> None:
    """stakes = max - min of S over C+ by a plain loop; below tau every label is neutral and no
    best teacher is named, whatever the intervals; a best teacher is the point leader."""
    lists = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [0, 2, 4]]
    stats = _stats(lists, seed=6)
    s, n, s_half, n_half, det = _counts(stats, 16, seed=7)
    s[1] = [16, 0, 16]  # large stakes
    s[2] = [8, 8, 9]  # stakes 1/16 < 0.1: never decisive
    s_half[1], s_half[2] = [8, 0, 8], [4, 4, 4]
    rules = ScoreConfig(plausible=0.05)
    sc = _score(stats, (s, n, s_half, n_half, det), rules=rules)
    for i, c in enumerate(lists):
        plus = [j for j in range(len(c))
                if j == 0 or stats.p_samp[i, j] >= 0.05
                or any(stats.q[t][i, j] >= 0.05 for t in ("good", "noisy"))]
        assert sc.plausible[i, : len(c)].tolist() == [j in plus for j in range(len(c))]
        vals = [s[i, j] / n[i, j] for j in plus]
        assert sc.stakes[i] == pytest.approx(max(vals) - min(vals))
        assert sc.decisive[i] == (max(vals) - min(vals) >= 0.1)
        # Jeffreys bounds: 16/16 vs 0/16 is surely decisive but not surely a spread of 1
        assert 0 <= sc.stakes_lo[i] <= sc.stakes_hi[i] <= 1
    assert not sc.decisive[2]
    for k in ("cos", "edge", "beyond"):
        assert set(sc.labels[k][:, :, 2].ravel()) <= {"neutral", None}
    assert sc.best_index[2] == -1 and sc.best_reason[2] == "not_decisive"
    fb = FAMILIES.index("rkl")
    for i in range(len(lists)):
        if sc.best_index[i] >= 0:
            edges = sc.point["edge"][:2, fb, i]
            assert sc.best_index[i] == int(np.nanargmax(edges))
            assert sc.best_prob[i] >= rules.leader_share
        elif sc.decisive[i] and sc.node_reason[i] is None:
            assert sc.best_reason[i] == "tie" and sc.best_prob[i] < rules.leader_share


def test_two_way_decisive_node_knowledge_not_confidence() -> None:
    """The misconception node of issue 11, by hand: candidates `9` (S = 0/12, the student's
    favourite) and `8` (S = 11/12). A teacher that sharpens the wrong token gets edge ~0 and no
    'helps' under any score (revision 1's beyond called it +0.97 'helps'); one that moves mass
    to the right token gets edge > 1 and 'helps', and is the confident best teacher."""
    z = torch.tensor([[2.0, 1.5, -5.0, -5.5, -6.0, -4.5, -5.2, -5.8, -6.1, -5.0]],
                     dtype=torch.float64)
    tail = torch.tensor([[0, 0, 1, -1, 0.5, -0.5, 1, 0, -1, 0.3]], dtype=torch.float64)
    wrong = torch.log_softmax(z / 0.15 + 0.3 * tail, -1)  # sharpens `9`, with its own tail
    right = torch.log_softmax(torch.tensor([[1.0, 7.0, -1.0, -2.0, -1.5, 0.0, -1.0, -2.0, -2.5,
                                             -1.0]], dtype=torch.float64), -1)
    stats = _stats_from(z, {"wrong": wrong, "right": right, "ctrl": torch.log_softmax(z, -1)},
                        [[0, 1]])
    assert np.exp(wrong[0, 0]) > 0.96  # nearly all its mass on the wrong token
    s, n = np.array([[0, 11]]), np.array([[12, 12]])
    counts = OutcomeCounts(s, n, np.array([[0, 5]]), np.array([[6, 6]]), np.zeros((1, 2), bool))
    sc = score_nodes(_context(teachers=("wrong", "right", "ctrl")), stats, counts, np.array([0]),
                     (False, False, True), rollout=0)
    assert sc.stakes[0] == pytest.approx(11 / 12) and sc.decisive[0]
    assert 0.1 < sc.stakes_lo[0] <= sc.stakes[0] <= sc.stakes_hi[0] <= 1
    for fi, f in enumerate(FAMILIES):
        w, r = 0, 1
        assert sc.point["cos"][w, fi, 0] < -0.5 < 0.5 < sc.point["cos"][r, fi, 0], f
        assert abs(sc.point["edge"][w, fi, 0]) < 0.05, f
        assert sc.point["edge"][r, fi, 0] > 1, f
        for k in ("cos", "edge", "beyond"):
            assert sc.labels[k][w, fi, 0] != "helps", (f, k)
        assert sc.labels["edge"][w, fi, 0] == "neutral"
        assert sc.labels["edge"][r, fi, 0] == "helps" and sc.labels["cos"][r, fi, 0] == "helps"
        # at a two-way node g and d lie along +-h: beyond is guarded, not amplified leftovers
        assert np.isnan(sc.point["beyond"][w, fi, 0]), f
        assert maths.NULL_REASONS[sc.point["reason"][w, fi, 0]] == "sharpening_dominated"
        assert sc.labels["beyond"][w, fi, 0] is None
    assert sc.g_share[0] < maths.RHO
    assert sc.best_index[0] == 1 and sc.best_prob[0] == 1.0 and sc.best_reason[0] is None
