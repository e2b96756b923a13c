"""engine.maths against independent computations: autograd, dense projections, brute-force loops,
HF's sampling warpers and simulation (Jeffreys coverage)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engine.maths import (
    BEST_REASONS,
    NULL_REASONS,
    RHO,
    alignment,
    best_teacher,
    bounds,
    crossfit_halves,
    direction,
    direction_stats,
    entropy,
    half_estimates,
    ideal_direction,
    interval,
    jeffreys_draws,
    label,
    plausible_set,
    proxies,
    reason_names,
    sampling_logprobs,
    sharpened_cos,
    sharpening_direction,
    sharpening_stats,
    stakes,
    stakes_interval,
    teacher_advantage,
)

torch.set_num_threads(1)
P, V = 6, 40


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student logits z, teacher log q and a sampled token per position (float64)."""
    gen = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(P, V, generator=gen, dtype=torch.float64)
    logq = torch.log_softmax(2 * torch.randn(P, V, generator=gen, dtype=torch.float64), -1)
    sampled = torch.randint(0, V, (P,), generator=gen)
    return z, logq, sampled


def _loss(signal: str, z: torch.Tensor, logq: torch.Tensor, y: torch.Tensor, beta: float):
    """Per-token losses written as a trainer would (TRL's generalized_jsd_loss conventions)."""
    logp = torch.log_softmax(z, -1)
    kl = lambda target, inp: F.kl_div(inp, target, reduction="sum", log_target=True)  # noqa: E731
    if signal == "rkl" or (signal == "jsd" and beta == 1):
        return kl(logp, logq)  # KL(p || q)
    if signal == "fkl" or (signal == "jsd" and beta == 0):
        return kl(logq, logp)  # KL(q || p)
    if signal == "jsd":
        log_m = torch.logsumexp(torch.stack([logp + math.log(1 - beta), logq + math.log(beta)]), 0)
        return beta * kl(logq, log_m) + (1 - beta) * kl(logp, log_m)
    lp_y = logp.gather(-1, y[:, None])
    ratio = (logq.gather(-1, y[:, None]) - lp_y).detach()
    return -(ratio * lp_y).sum()


def _autograd_direction(signal, z, logq, y, beta=0.5) -> torch.Tensor:
    z = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_loss(signal, z, logq, y, beta), z)
    return -grad


@pytest.mark.parametrize(
    ("signal", "beta"),
    [
        ("rkl", 0.5),
        ("fkl", 0.5),
        ("sampled", 0.5),
        ("jsd", 0.0),
        ("jsd", 0.3),
        ("jsd", 0.5),
        ("jsd", 1.0),
    ],
)
def test_direction_equals_autograd(logits, signal: str, beta: float) -> None:
    z, logq, y = logits
    d = direction(signal, torch.log_softmax(z, -1), logq, y, beta)
    expected = _autograd_direction(signal, z, logq, y, beta)
    assert d.dtype == torch.float64
    assert torch.allclose(d, expected, atol=1e-6, rtol=0)
    assert d.abs().max() > 1e-3  # a zero direction would pass trivially


def test_jsd_endpoints_are_kl_and_continuous(logits) -> None:
    z, logq, _ = logits
    logp = torch.log_softmax(z, -1)
    fkl, rkl = direction("fkl", logp, logq), direction("rkl", logp, logq)
    assert torch.equal(direction("jsd", logp, logq, beta=0.0), fkl)
    assert torch.equal(direction("jsd", logp, logq, beta=1.0), rkl)
    # near the endpoints the literal formula is beta d_fKL and (1 - beta) d_rKL to first order
    eps = 1e-6
    # (relative error ~ eps * max(p/q, q/p), up to ~1e-3 with these logits)
    assert torch.allclose(direction("jsd", logp, logq, beta=eps) / eps, fkl, rtol=1e-2, atol=1e-8)
    assert torch.allclose(
        direction("jsd", logp, logq, beta=1 - eps) / eps, rkl, rtol=1e-2, atol=1e-8
    )


def test_rkl_splits_into_teacher_part_minus_sharpening(logits) -> None:
    z, logq, _ = logits
    logp = torch.log_softmax(z, -1)
    p = logp.exp()
    t = p * (logq - (p * logq).sum(-1, keepdim=True))
    h = sharpening_direction(logp)
    assert torch.allclose(direction("rkl", logp, logq), t - h, atol=1e-12)
    zg = z.clone().requires_grad_(True)
    lp = torch.log_softmax(zg, -1)
    (dh,) = torch.autograd.grad(-(lp.exp() * lp).sum(), zg)
    assert torch.allclose(h, -dh, atol=1e-12)
    assert torch.allclose(entropy(logp), -(p * logp).sum(-1), atol=1e-12)


def test_truncated_distribution_gives_no_nan(logits) -> None:
    """-inf log-probs (outside top-k) are mass 0: p log p := 0, directions stay finite."""
    z, logq, y = logits
    logp = sampling_logprobs(z, 1.0, 1.0, 5)
    kept = torch.isfinite(logp)
    assert kept.sum(-1).eq(5).all()
    y = logp.argmax(-1)
    for x in [entropy(logp), sharpening_direction(logp)] + [
        direction(s, logp, logq, y) for s in ("rkl", "fkl", "jsd", "sampled")
    ]:
        assert torch.isfinite(x).all()
    # entropy and h equal those of the renormalised kept sub-distribution
    sub = torch.log_softmax(z[kept].view(P, 5), -1)
    assert torch.allclose(entropy(logp), -(sub.exp() * sub).sum(-1), atol=1e-12)
    assert torch.allclose(
        sharpening_direction(logp)[kept].view(P, 5), sharpening_direction(sub), atol=1e-12
    )
    assert (direction("rkl", logp, logq)[~kept] == 0).all()


@pytest.mark.parametrize(
    ("temperature", "top_p", "top_k"),
    [(1.0, 1.0, 0), (0.7, 1.0, 0), (1.0, 0.9, 0), (1.0, 1.0, 7), (0.6, 0.8, 10), (1.3, 0.5, 3)],
)
def test_sampling_logprobs_match_hf_warpers(temperature, top_p, top_k) -> None:
    z = 3 * torch.randn(8, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = TemperatureLogitsWarper(temperature)(None, z.clone())
    if top_k:
        ref = TopKLogitsWarper(top_k)(None, ref)
    if top_p < 1:
        ref = TopPLogitsWarper(top_p)(None, ref)
    ref = torch.log_softmax(ref, -1)
    ours = sampling_logprobs(z.float(), temperature, top_p, top_k)
    assert torch.equal(torch.isneginf(ours), torch.isneginf(ref))
    kept = torch.isfinite(ref)
    assert torch.allclose(ours[kept], ref[kept], atol=1e-5)  # float32 logits in
    if top_k or top_p < 1:
        assert (~kept).any()


@pytest.mark.parametrize(
    ("args", "message"),
    [((0.0, 1.0, 0), "temperature"), ((1.0, 0.0, 0), "top_p"), ((1.0, 1.0, -1), "top_k")],
)
def test_sampling_logprobs_reject_bad_settings(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        sampling_logprobs(torch.zeros(1, 3), *args)


def test_direction_rejects_bad_input(logits) -> None:
    z, logq, _ = logits
    logp = torch.log_softmax(z, -1)
    with pytest.raises(ValueError, match="unknown signal 'kl'"):
        direction("kl", logp, logq)
    with pytest.raises(ValueError, match="sampled token ids"):
        direction("sampled", logp, logq)
    with pytest.raises(ValueError, match="beta must be in"):
        direction("jsd", logp, logq, beta=1.5)
    truncated_q = sampling_logprobs(logq, 1.0, 1.0, 3)
    with pytest.raises(ValueError, match="without top-k/top-p truncation"):
        direction("rkl", logp, truncated_q)


def test_direction_stats_gather_and_reduce(logits) -> None:
    z, logq, y = logits
    logp = torch.log_softmax(z, -1)
    cand = torch.tensor([[3, 7, -1]] * P)
    h, h_cand, h_norm2 = sharpening_stats(logp.float(), cand)
    for signal in ("rkl", "fkl", "jsd", "sampled"):
        d = direction(signal, logp, logq, y)
        st = direction_stats(signal, logp.float(), logq.float(), cand, y, h=h)
        assert torch.allclose(st.d_cand[:, :2], d[:, [3, 7]], atol=1e-6)
        assert (st.d_cand[:, 2] == 0).all()
        assert torch.allclose(st.d_norm2, (d * d).sum(-1), rtol=1e-5)
        assert torch.allclose(st.hd, (sharpening_direction(logp) * d).sum(-1), rtol=1e-4)
    assert torch.allclose(h_cand[:, 1], h[:, 7]) and (h_cand[:, 2] == 0).all()
    assert torch.allclose(h_norm2, (h * h).sum(-1))


# ---------------------------------------------------------------------------------------------
# Node-level


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().numpy()


def _full_vocab_node(seed: int = 0, k: int = 6, signal: str = "rkl"):
    """One node with a candidate set C of k ids (plus one padded slot) in a V-token vocab."""
    gen = torch.Generator().manual_seed(seed)
    z = 2 * torch.randn(1, V, generator=gen, dtype=torch.float64)
    logq = torch.log_softmax(2 * torch.randn(1, V, generator=gen, dtype=torch.float64), -1)
    logp = torch.log_softmax(z, -1)
    ids = torch.randperm(V, generator=gen)[:k]
    cand = torch.cat([ids, torch.tensor([-1])])[None]
    mask = np.array([[True] * k + [False]])
    s_hat = np.concatenate([np.random.default_rng(seed).uniform(0, 1, k), [0.3]])[None]
    return z, logp, logq, cand, mask, s_hat, signal


def test_beyond_equals_dense_projection() -> None:
    for seed in range(5):
        for signal in ("rkl", "fkl", "jsd", "sampled"):
            z, logp, logq, cand, mask, s_hat, _ = _full_vocab_node(seed)
            y = cand[:, :1]
            p = logp.exp()
            p_cand = _np(p.gather(-1, cand.clamp(min=0)))
            _, g = ideal_direction(p_cand, s_hat, mask)
            h, h_cand, h_norm2 = sharpening_stats(logp, cand)
            st = direction_stats(signal, logp, logq, cand, y[:, 0], h=h)
            got = alignment(
                g, _np(st.d_cand), _np(st.d_norm2), _np(st.hd), _np(h_cand), _np(h_norm2), mask
            )
            # brute force on the full vocabulary
            g_full = np.zeros(V)
            g_full[_np(cand[0, :-1])] = g[0, :-1]
            d_full = _np(direction(signal, logp, logq, y[:, 0])[0])
            hv = _np(h[0])
            proj = np.eye(V) - np.outer(hv, hv) / (hv @ hv)
            pg, pd = proj @ g_full, proj @ d_full
            cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
            d_on_c = d_full[_np(cand[0, :-1])]
            assert got["beyond"][0] == pytest.approx(cos(pg, pd), abs=1e-10)
            assert got["cos"][0] == pytest.approx(cos(g_full, d_full), abs=1e-12)
            assert got["cos_c"][0] == pytest.approx(cos(g[0, :-1], d_on_c), abs=1e-12)
            assert got["gain"][0] == pytest.approx(g_full @ d_full, abs=1e-14)
            assert got["reason"][0] == 0


def test_g_equals_autograd_of_success_probability() -> None:
    z, logp, _, cand, mask, s_c, _ = _full_vocab_node(3)
    p = logp.exp()
    # S known on all of V: C = V
    s_all = np.random.default_rng(0).uniform(0, 1, (1, V))
    v_hat, g = ideal_direction(_np(p), s_all, np.ones((1, V), bool))
    zg = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((torch.softmax(zg, -1) * torch.from_numpy(s_all)).sum(), zg)
    assert np.allclose(g, _np(grad), atol=1e-12)
    assert v_hat[0] == pytest.approx(float((p * torch.from_numpy(s_all)).sum()))
    # S on C only, tokens outside C valued at V_hat
    p_cand = _np(p.gather(-1, cand.clamp(min=0)))
    v_hat, g = ideal_direction(p_cand, s_c, mask)
    s_ext = np.full(V, v_hat[0])
    s_ext[_np(cand[0, :-1])] = s_c[0, :-1]
    (grad,) = torch.autograd.grad((torch.softmax(zg, -1)[0] * torch.from_numpy(s_ext)).sum(), zg)
    g_full = np.zeros(V)
    g_full[_np(cand[0, :-1])] = g[0, :-1]
    assert np.allclose(g_full, _np(grad[0]), atol=1e-12)
    assert g[0, -1] == 0  # padded slot
    assert np.abs(g_full).max() > 1e-3


def test_ideal_direction_broadcasts_draws_and_zeroes_no_signal() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), 3) * 0.9
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], bool)
    draws = rng.uniform(size=(5, 3, 4))
    draws[:, 1, :2] = 0.7  # node 1: every candidate shares S -> no signal, g exactly 0
    v_hat, g = ideal_direction(p, draws, mask)
    assert v_hat.shape == (5, 3) and g.shape == (5, 3, 4)
    for b in range(5):
        for i in range(3):
            m = mask[i]
            v = (p[i, m] * draws[b, i, m]).sum() / p[i, m].sum()
            assert v_hat[b, i] == pytest.approx(v)
            if i != 1:
                assert np.allclose(g[b, i, m], p[i, m] * (draws[b, i, m] - v))
            assert (g[b, i, ~m] == 0).all()
    assert (g[:, 1] == 0).all()
    # padded slots are ignored whatever S they hold (a NaN there once poisoned V_hat)
    poisoned = np.where(mask, draws, np.nan)
    v2, g2 = ideal_direction(p, poisoned, mask)
    assert np.array_equal(v2, v_hat) and np.array_equal(g2, g)


def test_jeffreys_interval_covers_90_percent() -> None:
    """Synthetic nodes with known S: the nominal 90% interval of cos(g, d) covers 85-95%."""
    rng = np.random.default_rng(1)
    nodes, k, n_cont = 4000, 5, 16
    p = rng.dirichlet(np.ones(k), nodes)
    d = rng.dirichlet(np.ones(k), nodes) - p  # a fixed forward-KL-like direction, C = V
    s_true = rng.uniform(0, 1, (nodes, k))
    s = rng.binomial(n_cont, s_true)
    mask = np.ones((nodes, k), bool)
    ones, zeros = np.ones(nodes), np.zeros(nodes)
    h_c = np.zeros((nodes, k))

    def cos(s_hat):
        _, g = ideal_direction(p, s_hat, mask)
        return alignment(g, d, (d * d).sum(-1), zeros, h_c, ones, mask)["cos"]

    true = cos(s_true)
    lo, hi = interval(cos(jeffreys_draws(s, np.full_like(s, n_cont), 200, rng)))
    coverage = np.mean((lo <= true) & (true <= hi))
    # measured 87.0-87.6% on 4 x 20,000 nodes (cos is bounded, so slightly under nominal)
    assert 0.85 <= coverage <= 0.95, coverage


def test_jeffreys_draws_shape_and_validation() -> None:
    rng = np.random.default_rng(0)
    x = jeffreys_draws(np.array([[0, 16]]), np.array([[16, 16]]), 4000, rng)
    assert x.shape == (4000, 1, 2)
    # Beta(1/2, 16.5) has mean 0.5/17: zero successes keep uncertainty
    assert x[:, 0, 0].mean() == pytest.approx(0.5 / 17, rel=0.1) and x[:, 0, 0].std() > 0.01
    with pytest.raises(ValueError, match="0 <= s <= n"):
        jeffreys_draws(np.array([5]), np.array([4]), 2, rng)


def test_teacher_advantage_brute_force() -> None:
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(5), 4)
    q = rng.dirichlet(np.ones(5), (3, 4))  # (T, P, K)
    s_hat = rng.uniform(size=(4, 5))
    mask = rng.uniform(size=(4, 5)) < 0.7
    mask[:, 0] = True
    v_hat, _ = ideal_direction(p, s_hat, mask)
    adv = teacher_advantage(q, s_hat, v_hat, mask)
    assert adv.shape == (3, 4)
    for t in range(3):
        for i in range(4):
            brute = sum(q[t, i, a] * (s_hat[i, a] - v_hat[i]) for a in range(5) if mask[i, a])
            assert adv[t, i] == pytest.approx(brute)
    # a teacher equal to the student over the full set has zero advantage
    full = np.ones((4, 5), bool)
    v_full, _ = ideal_direction(p, s_hat, full)
    assert np.allclose(teacher_advantage(p, s_hat, v_full, full), 0, atol=1e-15)


def test_alignment_null_reasons() -> None:
    mask = np.ones((1, 3), bool)
    d = np.array([[0.1, -0.2, 0.05]])
    h = np.array([[0.02, 0.03, -0.01]])
    base = {
        "d_cand": d,
        "d_norm2": np.array([0.2]),
        "hd": np.array([0.001]),
        "h_cand": h,
        "h_norm2": np.array([0.01]),
        "mask": mask,
    }
    g = np.array([[0.1, -0.05, -0.05]])

    def reason(**kw):
        out = alignment(**{"g": g, **base, **kw})
        return reason_names(out["reason"])[0], out

    name, out = reason()
    assert name is None and not np.isnan(out["beyond"][0])
    name, out = reason(g=np.zeros((1, 3)))
    assert name == "no_signal" and np.isnan(out["cos"][0]) and out["gain"][0] == 0
    name, out = reason(d_cand=np.zeros((1, 3)), d_norm2=np.array([0.0]), hd=np.array([0.0]))
    assert name == "zero_direction" and np.isnan(out["cos"][0])
    name, out = reason(h_cand=np.zeros((1, 3)), h_norm2=np.array([0.0]))
    assert name == "no_sharpening_direction"
    assert not np.isnan(out["cos"][0]) and np.isnan(out["beyond"][0])
    # d = 3 h (with h's full-vocab norm): pure sharpening, guarded against cancellation
    name, out = reason(d_cand=3 * h, d_norm2=np.array([9 * 0.01]), hd=np.array([3 * 0.01]))
    assert name == "pure_sharpening" and np.isnan(out["beyond"][0])
    # g along h (C covers h's support): beyond has no meaning
    hh = (h * h).sum(-1)
    name, _ = reason(g=2 * h, h_norm2=hh)
    assert name == "ideal_is_sharpening"
    # d non-zero only outside C: cos = 0 is defined, cos_c is not
    _, out = reason(d_cand=np.zeros((1, 3)))
    assert out["cos"][0] == 0 and np.isnan(out["cos_c"][0])
    assert set(NULL_REASONS[1:]) >= {
        "no_signal",
        "zero_direction",
        "pure_sharpening",
        "no_sharpening_direction",
    }


def _scores(logp, logq, signal, g, cand, mask, cos_sharp=None, rho=RHO):
    h, h_cand, h_norm2 = sharpening_stats(logp, cand)
    st = direction_stats(signal, logp, logq, cand, h=h)
    return alignment(g, _np(st.d_cand), _np(st.d_norm2), _np(st.hd), _np(h_cand), _np(h_norm2),
                     mask, cos_sharp, rho)


@pytest.fixture
def favourite_right():
    """Many nodes (C = V) where the student's favourite token is the one that succeeds."""
    gen = torch.Generator().manual_seed(4)
    n, vocab = 1000, 30
    z = 2 * torch.randn(n, vocab, generator=gen, dtype=torch.float64)
    logp = torch.log_softmax(z, -1)
    s_hat = np.random.default_rng(4).uniform(0, 0.5, (n, vocab))
    s_hat[np.arange(n), _np(logp.argmax(-1))] = 1.0
    mask = np.ones((n, vocab), bool)
    _, g = ideal_direction(_np(logp.exp()), s_hat, mask)
    cand = torch.arange(vocab).expand(n, vocab)
    return z, logp, g, cand, mask, gen


def test_sharpened_student_is_pure_sharpening_under_rkl(favourite_right) -> None:
    """log q = (1 + eps) log p + c (q = softmax(z / T) is this with eps = 1/T - 1) gives
    d_rKL = eps h exactly: beyond is NULL (pure_sharpening) while the plain cosine is large, and
    the edge over the sharpened student (cos(g, d_sharp) = cos(g, h) for T < 1) is 0."""
    z, logp, g, cand, mask, gen = favourite_right
    _, h_cand, h_norm2 = sharpening_stats(logp, cand)
    ref = sharpened_cos(g, _np(h_cand), _np(h_norm2), mask)
    for temperature in (0.5, 0.9, 2.0):
        out = _scores(logp, torch.log_softmax(z / temperature, -1), "rkl", g, cand, mask, ref)
        assert (reason_names(out["reason"]) == "pure_sharpening").all()
        sign = 1 if temperature < 1 else -1
        assert sign * np.mean(out["cos"]) > 0.5  # plain cosine rewards mere sharpening
        assert np.allclose(out["cos"], sign * ref, atol=1e-12)
        if temperature < 1:
            assert np.abs(out["edge"]).max() < 1e-12  # no edge over the sharpened student
    noise = 0.05 * torch.randn(z.shape, generator=gen, dtype=torch.float64)
    out = _scores(logp, torch.log_softmax(1.5 * logp + noise, -1), "rkl", g, cand, mask, ref)
    # a slightly noisy sharpened student: |Pd|^2 is a sliver of |d|^2, so beyond is guarded
    # (sharpening_dominated) instead of amplifying the noise; its edge stays near 0
    assert (reason_names(out["reason"]) == "sharpening_dominated").mean() > 0.9
    assert np.isnan(out["beyond"][out["reason"] == 7]).all()
    assert (out["d_share"] < RHO).mean() > 0.9
    assert abs(np.mean(out["edge"])) < 0.05 < 0.5 < np.mean(out["cos"])


def test_rkl_beyond_ignores_teacher_temperature_fkl_does_not(favourite_right) -> None:
    """Adding any multiple of log p to log q moves d_rKL only along h; under forward KL a
    sharpened student keeps part of its norm after the projection (the split is exact only for
    reverse KL)."""
    z, logp, g, cand, mask, _ = favourite_right
    knows = F.one_hot(torch.from_numpy(np.argmax(g, -1)), z.shape[-1]).double()
    plain = _scores(logp, torch.log_softmax(z + knows, -1), "rkl", g, cand, mask, rho=0.0)
    sharp = _scores(logp, torch.log_softmax(2 * z + knows, -1), "rkl", g, cand, mask, rho=0.0)
    assert np.allclose(plain["beyond"], sharp["beyond"], atol=1e-9)
    assert not np.allclose(plain["cos"], sharp["cos"], atol=1e-3)
    assert np.mean(plain["beyond"]) > 0.5
    fkl = _scores(logp, torch.log_softmax(2 * z, -1), "fkl", g, cand, mask, rho=0.0)
    assert (fkl["reason"] == 0).all() and np.mean(fkl["beyond"]) > 0.5


def test_fkl_sharpening_residual_is_second_order() -> None:
    """q - p = eps h + O(eps^2) for log q = (1 + eps) log p + c: |P d| / |d| shrinks like eps."""
    z = 2 * torch.randn(1, V, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    logp = torch.log_softmax(z, -1)
    h = sharpening_direction(logp)[0]
    ratios = []
    for eps in (1e-2, 1e-3):
        d = direction("fkl", logp, torch.log_softmax((1 + eps) * z, -1))[0]
        pd = d - (h @ d) / (h @ h) * h
        ratios.append(float(pd.norm() / d.norm()))
    assert ratios[0] / ratios[1] == pytest.approx(10, rel=0.05)
    assert ratios[1] > 1e-6  # still above the pure-sharpening threshold


def test_best_teacher_matches_brute_force() -> None:
    """Leader, margin share, reasons and point margin against a loop over nodes and draws."""
    rng = np.random.default_rng(6)
    nodes, teachers, draws, margin, share = 40, 4, 50, 0.1, 0.9
    point = rng.normal(size=(nodes, teachers))
    point[2, 1] = np.nan
    point[5, :] = np.nan  # nobody eligible
    point[7, 1:] = np.nan  # one eligible teacher: it leads alone
    draws_x = point + rng.normal(scale=rng.choice([0.01, 0.5], size=(nodes, 1)),
                                 size=(draws, nodes, teachers))
    draws_x[rng.uniform(size=draws_x.shape) < 0.05] = np.nan
    eligible = np.array([True, True, True, False])  # teacher 3 is a control
    point[0, 3] = 10.0  # a winning control must be ignored
    decisive = rng.uniform(size=nodes) < 0.8
    decisive[7] = True
    out = best_teacher(point, draws_x, eligible, decisive, margin, share)
    for i in range(nodes):
        ok = [t for t in range(teachers) if eligible[t] and not np.isnan(point[i, t])]
        if not ok:
            assert out["index"][i] == -1 and np.isnan(out["prob"][i])
            assert BEST_REASONS[out["reason"][i]] == "no_teacher"
            continue
        best = max(ok, key=lambda t: (point[i, t], -t))
        ahead = 0
        for b in range(draws):
            mine = draws_x[b, i, best]
            rivals = [draws_x[b, i, t] for t in ok if t != best and not np.isnan(draws_x[b, i, t])]
            if not np.isnan(mine) and all(mine - r >= margin for r in rivals):
                ahead += 1
        assert out["leader"][i] == best
        assert out["prob"][i] == pytest.approx(ahead / draws)
        confident = decisive[i] and ahead / draws >= share
        assert out["index"][i] == (best if confident else -1)
        want = None if confident else ("not_decisive" if not decisive[i] else "tie")
        assert BEST_REASONS[out["reason"][i]] == want
        runners = [point[i, t] for t in ok if t != best]
        if runners:
            assert out["point_margin"][i] == pytest.approx(point[i, best] - max(runners))
        else:
            assert np.isnan(out["point_margin"][i])
    assert out["leader"][0] != 3
    assert out["index"][7] == 0  # alone, no rival in any draw
    assert {BEST_REASONS[r] for r in out["reason"]} >= {None, "tie", "not_decisive"}


def test_tie_within_margin_has_no_best_teacher() -> None:
    """The revision-1 artefact: 0.99994 vs 0.99993 with tight draws is a tie, not 'p 0.99'."""
    point = np.array([[0.99994, 0.99993, 0.2]])
    draws_x = point + np.random.default_rng(0).normal(scale=1e-6, size=(200, 1, 3))
    out = best_teacher(point, draws_x, np.ones(3, bool), np.array([True]), 0.1, 0.9)
    assert out["index"][0] == -1 and BEST_REASONS[out["reason"][0]] == "tie"
    assert out["leader"][0] == 0 and out["prob"][0] == 0.0
    # the same lead beyond the margin is confident
    point2 = np.array([[0.9, 0.5, 0.2]])
    draws2 = point2 + np.random.default_rng(0).normal(scale=0.01, size=(200, 1, 3))
    out2 = best_teacher(point2, draws2, np.ones(3, bool), np.array([True]), 0.1, 0.9)
    assert out2["index"][0] == 0 and out2["prob"][0] == 1.0


def test_interval_and_label_logic() -> None:
    x = np.array([[1.0, np.nan, np.nan], [2.0, np.nan, 5.0], [3.0, np.nan, np.nan]])
    lo, hi = interval(x, 0.0, 1.0)
    assert lo[0] == 1 and hi[0] == 3 and np.isnan(lo[1]) and lo[2] == hi[2] == 5
    lo, hi = interval(np.arange(101.0)[:, None])
    assert lo[0] == pytest.approx(5) and hi[0] == pytest.approx(95)
    assert bounds(0.9) == pytest.approx((0.05, 0.95))
    with pytest.raises(ValueError, match="level"):
        bounds(1.0)
    lo = np.array([0.1, -0.5, -0.1, np.nan, -0.5, 0.04, 0.1, -0.5])
    hi = np.array([0.5, -0.1, 0.1, np.nan, np.nan, 0.5, 0.5, -0.1])
    decisive = np.array([True, True, True, True, True, True, False, False])
    labels = label(lo, hi, decisive, 0.05)
    # above +eps helps, below -eps hurts, straddling or within eps neutral, NaN no label, and
    # a node where nothing is at stake is neutral whatever its interval
    assert labels.tolist() == ["helps", "hurts", "neutral", None, None, "neutral", "neutral",
                               "neutral"]


def test_crossfit_halves_match_separate_computation() -> None:
    rng = np.random.default_rng(7)
    nodes, k, teachers = 5, 4, 3
    p = rng.dirichlet(np.ones(k), nodes)
    mask = np.ones((nodes, k), bool)
    mask[0, 3] = False
    n = np.full((nodes, k), 16)
    n_half = np.full((nodes, k), 8)
    s_half = rng.integers(0, 9, (nodes, k))
    s = s_half + rng.integers(0, 9, (nodes, k))
    s[0, 3] = s_half[0, 3] = n[0, 3] = n_half[0, 3] = 0  # the padded slot, as the engine pads
    q = rng.dirichlet(np.ones(k), (teachers, nodes))
    d = rng.normal(size=(teachers, nodes, k))
    d2 = (d * d).sum(-1) + 1.0
    h = rng.normal(size=(nodes, k))
    h2 = (h * h).sum(-1) + 0.5
    hd = rng.normal(size=(teachers, nodes)) * 0.1
    ref = 0.7 * h
    ref2 = 0.49 * h2
    halves = half_estimates(s, n, s_half, n_half, mask)
    out = crossfit_halves(p, mask, halves, q, d, d2, hd, h, h2, ref, ref2)
    for key, s_hat in (("a", s_half / 8), ("b", (s - s_half) / 8)):
        v, g = ideal_direction(p, s_hat, mask)
        for t in range(teachers):
            adv = teacher_advantage(q[t], s_hat, v, mask)
            cos = alignment(g, d[t], d2[t], hd[t], h, h2, mask)["cos"]
            g0 = np.where(mask, g, 0)
            cos_h = (g0 * h).sum(-1) / np.sqrt((g0 * g0).sum(-1) * h2)  # d_sharp along +h
            assert np.allclose(out[f"advantage_{key}"][t], adv)
            assert np.allclose(out[f"edge_{key}"][t], cos - cos_h, equal_nan=True)
    assert np.isfinite(out["advantage_a"]).all() and np.isfinite(out["advantage_b"]).all()


def test_half_estimates_deterministic_and_unjudged() -> None:
    mask = np.array([[True, True, True]])
    s, n = np.array([[1, 3, 2]]), np.array([[1, 6, 2]])
    s_half, n_half = np.array([[1, 1, 2]]), np.array([[1, 3, 2]])
    det = np.array([[True, False, False]])
    got = half_estimates(s, n, s_half, n_half, mask, det)
    assert got[:, 0, 0].tolist() == [1.0, 1.0]  # certain outcome in both halves
    assert got[:, 0, 1].tolist() == [1 / 3, 2 / 3]
    assert got[0, 0, 2] == 1.0 and np.isnan(got[1, 0, 2])  # nothing judged in half b: no S


def test_jeffreys_draws_are_exact_for_deterministic_candidates() -> None:
    rng = np.random.default_rng(0)
    s, n = np.array([[0, 1, 3, 0]]), np.array([[1, 1, 12, 0]])
    det = np.array([[True, True, False, False]])
    x = jeffreys_draws(s, n, 500, rng, det)
    assert (x[:, 0, 0] == 0).all() and (x[:, 0, 1] == 1).all()
    assert x[:, 0, 2].std() > 0.05  # a sampled candidate keeps its posterior spread
    assert np.isnan(x[:, 0, 3]).all()  # nothing judged: no S
    # without the flag, 0 of 1 spreads widely: the bug the flag removes
    assert jeffreys_draws(s, n, 500, rng)[:, 0, 0].std() > 0.1


@pytest.mark.parametrize("temperature", [0.6, 1.5])
def test_g_is_the_raw_logit_gradient_by_finite_differences(temperature: float) -> None:
    """g = (1/T) p (S - V) on the top-k / top-p set: the gradient of sum_a p_samp,a S_a with
    respect to the raw logits z, checked by central differences at T != 1 with top_p < 1."""
    rng = np.random.default_rng(3)
    z = torch.from_numpy(rng.normal(0, 0.5, (1, 12)))
    s_true = rng.uniform(0, 1, 12)

    def objective(zz: torch.Tensor) -> float:
        p = sampling_logprobs(zz, temperature, 0.8, 8).exp()[0].numpy()
        return float((p * s_true).sum())

    p = sampling_logprobs(z, temperature, 0.8, 8).exp().numpy()
    kept = p[0] > 0
    assert 1 < kept.sum() < 12  # the filters really cut
    _, g = ideal_direction(p, s_true[None], np.ones((1, 12), bool), temperature)
    eps = 1e-6
    fd = np.zeros(12)
    for a in range(12):
        up, down = z.clone(), z.clone()
        up[0, a] += eps
        down[0, a] -= eps
        fd[a] = (objective(up) - objective(down)) / (2 * eps)
    assert np.allclose(g[0], fd, atol=1e-7)
    assert (g[0, ~kept] == 0).all()
    _, g1 = ideal_direction(p, s_true[None], np.ones((1, 12), bool))
    assert not np.allclose(g1[0], fd, atol=1e-4)  # the T = 1 formula is off by 1/T


def test_proxies_against_direct_formulas(logits) -> None:
    z, logq, y = logits
    logp = torch.log_softmax(z, -1)
    out = proxies(logp, logq, y, 3)
    p, q = logp.exp(), logq.exp()
    for i in range(P):
        pi, qi = p[i].tolist(), q[i].tolist()
        m = [(a + b) / 2 for a, b in zip(pi, qi, strict=True)]
        kl = lambda x, w: sum(a * math.log(a / c) for a, c in zip(x, w, strict=True))  # noqa: E731
        assert out["kl_pq"][i] == pytest.approx(kl(pi, qi))
        assert out["kl_qp"][i] == pytest.approx(kl(qi, pi))
        assert out["js"][i] == pytest.approx(0.5 * kl(qi, m) + 0.5 * kl(pi, m))
        assert out["teacher_entropy"][i] == pytest.approx(-sum(a * math.log(a) for a in qi))
        top3 = sorted(range(V), key=lambda a: -pi[a])[:3]
        assert out["teachability"][i] == pytest.approx(sum(qi[a] for a in top3))
        order = sorted(range(V), key=lambda a: -qi[a])
        assert out["sampled_rank"][i] == order.index(int(y[i])) + 1
        assert out["logq_sampled"][i] == pytest.approx(math.log(qi[int(y[i])]))
    # identical distributions: every divergence is 0, the favourite has rank 1
    same = proxies(logp, logp, logp.argmax(-1), 3)
    assert torch.allclose(same["js"], torch.zeros(P, dtype=torch.float64), atol=1e-12)
    assert (same["sampled_rank"] == 1).all()


def test_interval_matches_nanquantile_with_nan_columns() -> None:
    import warnings

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4, 6, 9))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[:, 0, 0, 0] = np.nan  # all NaN
    x[:199, 1, 1, 1] = np.nan  # a single valid draw
    x[199, 1, 1, 1] = 0.5
    lo, hi = interval(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanquantile(x, [0.05, 0.95], axis=0)
    assert np.allclose(lo, ref[0], equal_nan=True) and np.allclose(hi, ref[1], equal_nan=True)
    assert np.isnan(lo[0, 0, 0]) and lo[1, 1, 1] == hi[1, 1, 1]


def test_plausible_stakes_and_stakes_interval_brute_force() -> None:
    """C+, stakes and its interval against loops over candidates and ordered pairs."""
    rng = np.random.default_rng(11)
    m, k, t = 30, 5, 2
    mask = rng.uniform(size=(m, k)) < 0.8
    mask[:, 0] = True
    p = np.where(mask, rng.dirichlet(np.ones(k) * 0.3, m), 0)
    q = np.where(mask, rng.dirichlet(np.ones(k) * 0.3, (t, m)), 0)
    sampled = np.zeros((m, k), bool)
    sampled[:, 0] = True
    s_hat = np.where(mask, rng.uniform(size=(m, k)), 0)
    s_hat[3, 1] = np.nan  # unverifiable candidate
    lo = np.clip(s_hat - rng.uniform(0, 0.2, (m, k)), 0, 1)
    hi = np.clip(s_hat + rng.uniform(0, 0.2, (m, k)), 0, 1)
    plus = plausible_set(p, q, sampled, mask, 0.05)
    st = stakes(s_hat, plus)
    st_lo, st_hi = stakes_interval(lo, hi, plus)
    for i in range(m):
        c = [a for a in range(k) if mask[i, a]
             and (p[i, a] >= 0.05 or (q[:, i, a] >= 0.05).any() or a == 0)]
        assert plus[i].tolist() == [a in c for a in range(k)]
        vals = [s_hat[i, a] for a in c]
        if any(np.isnan(vals)) and len(c) > 1:
            assert np.isnan(st[i]) and np.isnan(st_lo[i])
            continue
        assert st[i] == pytest.approx(max(vals) - min(vals))
        pairs = [(a, b) for a in c for b in c if a != b]
        want_lo = max([0.0] + [lo[i, a] - hi[i, b] for a, b in pairs]) if pairs else 0.0
        want_hi = max([hi[i, a] - lo[i, b] for a, b in pairs]) if pairs else 0.0
        assert st_lo[i] == pytest.approx(want_lo) and st_hi[i] == pytest.approx(want_hi)
        assert st_lo[i] <= st[i] <= st_hi[i]  # per-candidate intervals contain S_hat here
    assert plausible_set(p, q[:0], sampled, mask, 0.05).tolist() == \
        (mask & ((p >= 0.05) | sampled)).tolist()  # no non-control teacher
