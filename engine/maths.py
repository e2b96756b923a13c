"""The maths of method.md as pure functions: no I/O, no models, no global randomness.

Two halves, split by size:

* **Full-vocabulary** functions (torch) take one chunk of positions, shape (P, V), and return
  float64. They compute in float64 whatever comes in, because the beyond-sharpening score
  subtracts nearly equal numbers; a (P, V) chunk is the only large buffer, so callers bound
  memory by the chunk size. Entries of ``logp`` equal to -inf (tokens outside the sampling
  nucleus) are mass 0 and never produce NaN (p log p := 0).
* **Node-level** functions (numpy float64) work on the candidate set C only, padded to K slots
  with a boolean ``mask``. Only S changes across Jeffreys draws, so every function broadcasts
  over leading dimensions: draws (B, P, K) against per-node quantities (P, K), or
  (B, T, F, P, K) against (T, F, P, K). Nothing loops over nodes, draws or teachers.

Node-level API, as used by the scoring stage (shapes for one chunk of P nodes)::

    h_cand, h_norm2 = sharpening_stats(logp_train, cand_ids)        # torch, once per chunk
    stats = direction_stats(signal, logp_train, logq, cand_ids, sampled, beta, h)  # per teacher
    v_hat, g = ideal_direction(p_cand, s_hat, mask, temperature)    # point estimate
    ref = sharpened_cos(g, sharp.d_cand, sharp.d_norm2, mask)       # the sharpened student
    scores = alignment(g, stats.d_cand, stats.d_norm2, stats.hd, h_cand, h_norm2, mask, ref)
    plus = plausible_set(p_cand, q_non_control, sampled, mask)     # C+
    st = stakes(s_hat, plus)                                        # decisive: st >= tau
    draws = jeffreys_draws(s, n, 200, rng, deterministic)           # (B, K), one node's key
    v_b, g_b = ideal_direction(p_cand, draws, mask, temperature)    # (B, P), (B, P, K)
    lo, hi = interval(alignment(g_b, ...)["edge"], *bounds(LEVELS["edge"]))
    label(lo, hi, st >= tau, epsilon)        # NaN interval (NULL score): no label
    best_teacher(point, draws, eligible, st >= tau, margin=0.1, share=0.9)

``alignment`` returns NaN plus a reason code (see ``NULL_REASONS``) wherever a score is
undefined, never 0. Beside the four reasons of method.md there is one more, for completeness:
``ideal_is_sharpening`` when g itself lies along h (|P g| ~ 0), so cos(Pg, Pd) has no meaning;
it needs C to cover every token where h is non-zero, which only happens in tiny vocabularies.

Reverse KL and temperature: a teacher q = softmax(z / T) built from the student's own logits has
log q = log p / T + const, so its reverse-KL direction is exactly (1/T - 1) h: the
sharpened-student control is NULL (``pure_sharpening``) under reverse KL at every node, by
construction, not just approximately 0. Under forward KL or JSD it is only sharpening to first
order (q - p = eps h + O(eps^2) for log q = (1 + eps) log p + c) and keeps part of its norm after
the projection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from engine.runfile.names import SIGNALS

__all__ = [
    "D_NORM2_MIN",
    "H_NORM2_MIN",
    "NULL_REASONS",
    "PURE_SHARPENING_REL",
    "SIGNALS",
    "LEVELS",
    "RHO",
    "STAKES_CANDIDATE_LEVEL",
    "DirectionStats",
    "alignment",
    "BEST_REASONS",
    "bounds",
    "plausible_set",
    "sharpened_cos",
    "stakes",
    "stakes_interval",
    "best_teacher",
    "crossfit_halves",
    "half_estimates",
    "direction",
    "direction_stats",
    "entropy",
    "ideal_direction",
    "interval",
    "jeffreys_draws",
    "label",
    "proxies",
    "reason_names",
    "sampling_logprobs",
    "sharpening_direction",
    "sharpening_stats",
    "teacher_advantage",
]

NULL_REASONS: tuple[str | None, ...] = (
    None,
    "no_signal",
    "zero_direction",
    "no_sharpening_direction",
    "pure_sharpening",
    "ideal_is_sharpening",
    "unverifiable",
    "sharpening_dominated",
)
"""Reason codes returned by ``alignment``; index 0 means the score is defined."""

H_NORM2_MIN = 1e-24
"""|h|^2 below this (|h| < 1e-12, where float64 rounding in h is ~1e-4 of h) has no direction."""

D_NORM2_MIN = 1e-30
"""|d|^2 at or below this (|d| <= 1e-15, below the resolution of probabilities) is no move."""

PURE_SHARPENING_REL = 1e-6
"""|P d| < PURE_SHARPENING_REL |d| marks a pure sharpening direction (method.md)."""

_NO_SIGNAL, _ZERO_DIRECTION, _NO_H, _PURE_SHARPENING, _IDEAL_IS_H = 1, 2, 3, 4, 5
UNVERIFIABLE = 6
"""Reason code of a node where some candidate has no judged continuation (no S)."""
_SHARPENING_DOMINATED = 7

RHO = 0.05
"""Conditioning guard of beyond: both |Pg|^2/|g|^2 and |Pd|^2/|d|^2 must reach this share."""

LEVELS: dict[str, float] = {"cos": 0.95, "edge": 0.95, "beyond": 0.95, "gain": 0.88,
                            "advantage": 0.88, "s": 0.90}
"""Nominal level of the Jeffreys-draw interval per score, chosen so that the *actual* coverage
is 85-95% in all four regimes of method.md (measured by ``engine.calibration``, asserted by
tests/test_coverage.py; the table is in docs/method.md). Cosines need the wider nominal level: at
nominal 90% they covered 81-83% where nearly every continuation fails or succeeds. Gain and
advantage need a narrower one: at nominal 90% they over-covered those regimes (95-96%), where
most draws of a near-0 or near-1 S barely move them."""

STAKES_CANDIDATE_LEVEL = 0.72
"""Level of the per-candidate Jeffreys intervals that bound stakes (``stakes_interval``)."""


# ---------------------------------------------------------------------------------------------
# Full-vocabulary part (torch, one chunk of positions)


def _f64(x: Tensor) -> Tensor:
    return x.to(torch.float64)


def _probs(logp: Tensor) -> Tensor:
    """exp(logp); exactly 0 where logp is -inf."""
    return torch.exp(logp)


def _finite_or_zero(x: Tensor, logp: Tensor) -> Tensor:
    """x where the token has mass, else 0: multiplying by p = 0 must not turn inf into NaN."""
    return torch.where(torch.isneginf(logp), torch.zeros_like(x), x)


def sampling_logprobs(logits: Tensor, temperature: float, top_p: float, top_k: int,
                      keep: Tensor | None = None) -> Tensor:
    """log p_samp over V: temperature, then top-k, then top-p (the order of HF and vLLM).

    Tokens outside the kept set get -inf; ties at the k-th logit are kept, as in HF. Top-p keeps
    the smallest prefix of the descending order whose mass reaches top_p (at least one token).
    ``top_k=0`` and ``top_p=1`` switch the filters off.

    ``keep`` (one token id per row, shape ``logits.shape[:-1]``) forces those tokens into the
    kept set of both filters, without dropping any other. Scoring passes the sampled tokens:
    decode kept them, but float noise between decode's and scoring's logits can put a token at
    the nucleus edge just outside, which would give it p_samp = 0 and log p = -inf.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature}); greedy is not a policy")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (got {top_p})")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, 0 meaning off (got {top_k})")
    z = _f64(logits) / temperature
    idx = None if keep is None else keep.to(z.device, torch.long).unsqueeze(-1)
    z_keep = None if idx is None else z.gather(-1, idx)

    def forced(zz: Tensor) -> Tensor:
        return zz if idx is None else zz.scatter(-1, idx, z_keep)

    if 0 < top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[..., -1:]
        z = forced(z.masked_fill(z < kth, -math.inf))
    if top_p < 1:
        sorted_z, order = torch.sort(z, dim=-1, descending=True)
        sorted_p = torch.softmax(sorted_z, dim=-1)
        mass_before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # exclusive cumulative mass
        drop_sorted = mass_before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        z = forced(z.masked_fill(drop, -math.inf))
    return torch.log_softmax(z, dim=-1)


def entropy(logp: Tensor) -> Tensor:
    """H(p) = -sum p log p per position, (P,); -inf entries carry no mass."""
    logp = _f64(logp)
    return -(_probs(logp) * _finite_or_zero(logp, logp)).sum(-1)


def sharpening_direction(logp: Tensor) -> Tensor:
    """h = p (log p + H(p)) = -dH/dz, (P, V): the move that only makes the student surer."""
    logp = _f64(logp)
    h_ent = entropy(logp).unsqueeze(-1)
    return _probs(logp) * _finite_or_zero(logp + h_ent, logp)


def _centered(p: Tensor, f: Tensor) -> Tensor:
    """p (f - E_p f): the shared form of every per-token distillation direction."""
    return p * (f - (p * f).sum(-1, keepdim=True))


def _check_teacher_support(logp: Tensor, logq: Tensor, signal: str) -> None:
    if bool((torch.isneginf(logq) & ~torch.isneginf(logp)).any()):
        raise ValueError(
            f"the {signal} direction is infinite: the teacher gives probability 0 to a token the "
            "student can emit; read teacher logits without top-k/top-p truncation"
        )


def direction(
    signal: str,
    logp: Tensor,
    logq: Tensor,
    sampled: Tensor | None = None,
    beta: float = 0.5,
) -> Tensor:
    """Descent direction d = -dD/dz of a per-token distillation loss D, (P, V).

    ``logp`` is the student's log p_train (the trainer's distribution), ``logq`` the teacher's.
    Generalised JSD follows GKD/TRL: beta KL(q||M) + (1-beta) KL(p||M), M = beta q + (1-beta) p;
    its endpoints are forward KL (beta=0) and reverse KL (beta=1), returned as such because the
    literal formula vanishes there. Near an endpoint the JSD direction is beta d_fKL or
    (1-beta) d_rKL to first order: cosines are continuous, gains scale.
    """
    if signal not in SIGNALS:
        raise ValueError(f"unknown signal {signal!r}; expected one of {', '.join(SIGNALS)}")
    logp, logq = _f64(logp), _f64(logq)
    p = _probs(logp)
    if signal == "jsd":
        if not 0 <= beta <= 1:
            raise ValueError(f"jsd beta must be in [0, 1] (got {beta})")
        if beta == 0:
            signal = "fkl"
        elif beta == 1:
            signal = "rkl"
    if signal == "fkl":
        return _probs(logq) - p
    if signal == "rkl":
        _check_teacher_support(logp, logq, signal)
        return _centered(p, _finite_or_zero(logq - logp, logp))
    if signal == "jsd":
        log_m = torch.logaddexp(logp + math.log1p(-beta), logq + math.log(beta))
        return (1 - beta) * _centered(p, _finite_or_zero(log_m - logp, logp))
    # sampled-token advantage: -(log q_y - log p_y) log p_y with the ratio held constant
    if sampled is None:
        raise ValueError("the 'sampled' signal needs the sampled token ids (P,)")
    _check_teacher_support(logp, logq, signal)
    idx = sampled.long().unsqueeze(-1)
    ratio = logq.gather(-1, idx) - logp.gather(-1, idx)  # (P, 1)
    one_hot = torch.zeros_like(p).scatter(-1, idx, 1.0)
    return ratio * (one_hot - p)


@dataclass
class DirectionStats:
    """What the node-level scores need from one (P, V) direction, for one teacher and signal."""

    d_cand: Tensor  # (P, K) d at the candidate ids; 0 at padded (negative) ids
    d_norm2: Tensor  # (P,) |d|^2 over the full vocabulary
    hd: Tensor  # (P,) <h, d> over the full vocabulary


def _gather_cand(x: Tensor, cand_ids: Tensor) -> Tensor:
    """x at the candidate ids, (P, K); padded slots (id < 0) read as 0."""
    ids = cand_ids.long()
    vals = x.gather(-1, ids.clamp(min=0))
    return torch.where(ids >= 0, vals, torch.zeros_like(vals))


def sharpening_stats(logp_train: Tensor, cand_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(h over V, h on the candidates (P, K), |h|^2 (P,)): computed once per chunk."""
    h = sharpening_direction(logp_train)
    return h, _gather_cand(h, cand_ids), (h * h).sum(-1)


def direction_stats(
    signal: str,
    logp_train: Tensor,
    logq: Tensor,
    cand_ids: Tensor,
    sampled: Tensor | None = None,
    beta: float = 0.5,
    h: Tensor | None = None,
) -> DirectionStats:
    """Reduce one full-vocabulary direction to the per-node quantities that are stored.

    Pass ``h`` (from ``sharpening_stats``) to share it across teachers and signals.
    """
    d = direction(signal, logp_train, logq, sampled, beta)
    if h is None:
        h = sharpening_direction(logp_train)
    return DirectionStats(_gather_cand(d, cand_ids), (d * d).sum(-1), (_f64(h) * d).sum(-1))


def _kl(logp: Tensor, logq: Tensor) -> Tensor:
    """KL(p || q) per position; tokens without p-mass contribute 0."""
    return (_probs(logp) * _finite_or_zero(logp - logq, logp)).sum(-1)


def proxies(logp: Tensor, logq: Tensor, sampled: Tensor, student_top_k: int) -> dict[str, Tensor]:
    """Cheap per-position proxies whose correlation with alignment the user can query, (P,) each.

    teachability is the teacher's mass on the student's top-k tokens; sampled_rank is 1 + the
    number of tokens the teacher strictly prefers to the sampled one.
    """
    if student_top_k < 1:
        raise ValueError(f"student_top_k must be >= 1 (got {student_top_k})")
    logp, logq = _f64(logp), _f64(logq)
    q = _probs(logq)
    log_m = torch.logaddexp(logp, logq) - math.log(2.0)
    top = torch.topk(logp, min(student_top_k, logp.shape[-1]), dim=-1).indices
    idx = sampled.long().unsqueeze(-1)
    logq_y = logq.gather(-1, idx)
    return {
        "student_entropy": entropy(logp),
        "teacher_entropy": entropy(logq),
        "kl_pq": _kl(logp, logq),
        "kl_qp": _kl(logq, logp),
        "js": 0.5 * _kl(logq, log_m) + 0.5 * _kl(logp, log_m),
        "teachability": q.gather(-1, top).sum(-1),
        "sampled_rank": 1 + (logq > logq_y).sum(-1),
        "logq_sampled": logq_y.squeeze(-1),
    }


# ---------------------------------------------------------------------------------------------
# Node-level part (numpy float64, candidate set padded to K with a mask)


def _a(x: object) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def ideal_direction(
    p_cand: np.ndarray, s_hat: np.ndarray, mask: np.ndarray, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """V_hat = sum_C p S / m_s and g_a = (1/T) p_a (S_a - V_hat) on C (0 on padded slots).

    g is the gradient of sum_a p_samp,a S_a with respect to the raw logits z, the coordinates
    every direction d lives in: p_samp = softmax(z / T) on the top-k / top-p set, hence 1/T
    (tokens outside that set have p = 0 and get 0). Tokens outside C are valued at V_hat, so
    their g component is 0. g is set to exactly 0 when all candidates with mass share one S (no
    signal), so ``g == 0`` tests are exact despite rounding in V_hat. Slots without mass
    (padding) are ignored whatever S they hold. Shapes broadcast over leading dims: (B, P, K)
    draws against (P, K).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature})")
    p = _a(p_cand) * np.asarray(mask, dtype=bool)
    s = _a(s_hat)
    live = p > 0
    m_s = p.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        v_hat = np.where(live, p * s, 0.0).sum(-1) / m_s  # dead slots may hold NaN S
    spread = np.where(live, s, -np.inf).max(-1) - np.where(live, s, np.inf).min(-1)
    g = np.where(live, p * (s - v_hat[..., None]) / temperature, 0.0)
    g = np.where((spread > 0)[..., None], g, 0.0)
    return v_hat, g


def teacher_advantage(
    q_cand: np.ndarray, s_hat: np.ndarray, v_hat: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """A_c = sum_C q_a (S_a - V_hat): the success gained if the student adopted q at the node."""
    m = np.asarray(mask, dtype=bool)
    return np.where(m, _a(q_cand) * (_a(s_hat) - _a(v_hat)[..., None]), 0.0).sum(-1)


def alignment(
    g: np.ndarray,
    d_cand: np.ndarray,
    d_norm2: np.ndarray,
    hd: np.ndarray,
    h_cand: np.ndarray,
    h_norm2: np.ndarray,
    mask: np.ndarray,
    cos_sharp: np.ndarray | None = None,
    rho: float = RHO,
) -> dict[str, np.ndarray]:
    """gain, cos, cos_c, edge and beyond from the stored quantities, with reason codes.

    g is 0 outside C, so every inner product with g is a sum over C; beyond uses
    <Pg, Pd> = <g,d> - <g,h><h,d>/|h|^2 and the matching norms, with P = I - h h^T/|h|^2, and
    is NULL (``sharpening_dominated``) unless both |Pg|^2 >= rho |g|^2 and |Pd|^2 >= rho |d|^2:
    below that the projected cosine is the angle between leftovers of h's tail.

    ``cos_sharp`` is the sharpened-student reference's cosine under the same signal (from
    ``sharpened_cos``), broadcastable to the result; edge = cos - cos_sharp, where a reference
    that does not move (NaN) contributes 0. Without it, edge is NaN.

    Returns arrays broadcast over all inputs' leading dims: ``gain`` (never NaN), ``cos``,
    ``cos_c`` (NaN also where d vanishes on C), ``edge``, ``beyond``, the residual shares
    ``g_share`` = |Pg|^2/|g|^2 and ``d_share`` = |Pd|^2/|d|^2, and ``reason`` (int codes into
    ``NULL_REASONS``; 0 when every score is defined, else the first reason in that order).
    """
    m = np.asarray(mask, dtype=bool)
    g = np.where(m, _a(g), 0.0)
    d_c = np.where(m, _a(d_cand), 0.0)
    h_c = np.where(m, _a(h_cand), 0.0)
    d2, hd, h2 = _a(d_norm2), _a(hd), _a(h_norm2)
    gain = (g * d_c).sum(-1)
    g2 = (g * g).sum(-1)
    gh = (g * h_c).sum(-1)
    dc2 = (d_c * d_c).sum(-1)

    no_signal = g2 == 0
    zero_dir = d2 <= D_NORM2_MIN
    no_h = h2 < H_NORM2_MIN
    h2_safe = np.where(no_h, 1.0, h2)
    pd2 = np.maximum(d2 - hd * hd / h2_safe, 0.0)
    pg2 = np.maximum(g2 - gh * gh / h2_safe, 0.0)
    pure = pd2 < PURE_SHARPENING_REL**2 * d2
    ideal_is_h = pg2 < PURE_SHARPENING_REL**2 * g2

    with np.errstate(invalid="ignore", divide="ignore"):
        cos = gain / np.sqrt(g2 * d2)
        cos_c = gain / np.sqrt(g2 * dc2)
        beyond = (gain - gh * hd / h2_safe) / np.sqrt(pg2 * pd2)
        g_share = np.where(no_h | no_signal, np.nan, pg2 / g2)
        d_share = np.where(no_h | zero_dir, np.nan, pd2 / d2)
    dominated = (pg2 < rho * g2) | (pd2 < rho * d2)
    cos_null = no_signal | zero_dir
    beyond_null = cos_null | no_h | pure | ideal_is_h | dominated
    cos = np.where(cos_null, np.nan, np.clip(cos, -1.0, 1.0))
    cos_c = np.where(cos_null | (dc2 <= D_NORM2_MIN), np.nan, np.clip(cos_c, -1.0, 1.0))
    beyond = np.where(beyond_null, np.nan, np.clip(beyond, -1.0, 1.0))
    if cos_sharp is None:
        edge = np.full(cos.shape, np.nan)
    else:
        ref = _a(cos_sharp)
        edge = cos - np.where(np.isnan(ref), 0.0, ref)
    reason = np.select(
        [no_signal, zero_dir, no_h, pure, ideal_is_h, dominated],
        [_NO_SIGNAL, _ZERO_DIRECTION, _NO_H, _PURE_SHARPENING, _IDEAL_IS_H,
         _SHARPENING_DOMINATED],
        default=0,
    ).astype(np.int8)
    return {"gain": gain, "cos": cos, "cos_c": cos_c, "edge": edge, "beyond": beyond,
            "g_share": g_share, "d_share": d_share, "reason": reason}


def sharpened_cos(
    g: np.ndarray, ref_d_cand: np.ndarray, ref_d_norm2: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """cos(g, d_sharp): the alignment the sharpened student earns by confidence alone.

    ``ref_*`` are the sharpened-student reference's direction statistics under one signal
    (for reverse KL d_sharp is a positive multiple of h, so this is cos(g, h) exactly). NaN
    where g or d_sharp vanishes; ``alignment`` then subtracts nothing.
    """
    m = np.asarray(mask, dtype=bool)
    g = np.where(m, _a(g), 0.0)
    d = np.where(m, _a(ref_d_cand), 0.0)
    d2 = _a(ref_d_norm2)
    g2 = (g * g).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (g * d).sum(-1) / np.sqrt(g2 * d2)
    return np.where((g2 == 0) | (d2 <= D_NORM2_MIN), np.nan, np.clip(c, -1.0, 1.0))


def plausible_set(
    p_cand: np.ndarray,
    q_cand: np.ndarray,
    sampled: np.ndarray,
    mask: np.ndarray,
    threshold: float = 0.01,
) -> np.ndarray:
    """C+: candidates the student (p >= pi) or a non-control teacher (q >= pi) finds plausible,
    plus the sampled token; (M, K) bool. ``q_cand`` is (T, M, K) over non-control teachers (T
    may be 0). Fixed by p and q, so the same set serves every Jeffreys draw."""
    m = np.asarray(mask, dtype=bool)
    q = _a(q_cand)
    by_teacher = (q >= threshold).any(0) if q.shape[0] else np.zeros(m.shape, bool)
    return m & ((_a(p_cand) >= threshold) | by_teacher | np.asarray(sampled, dtype=bool))


def stakes(s_hat: np.ndarray, plausible: np.ndarray) -> np.ndarray:
    """max - min of S over C+, in success probability; (..., M) for S of shape (..., M, K).

    0 when C+ has one candidate; NaN when a candidate of C+ has no S (unverifiable)."""
    c = np.asarray(plausible, dtype=bool)
    s = _a(s_hat)
    top = np.where(c, s, -np.inf).max(-1)
    bottom = np.where(c, s, np.inf).min(-1)
    missing = (c & np.isnan(s)).any(-1)
    return np.where(missing, np.nan, top - bottom)


def stakes_interval(
    s_lo: np.ndarray, s_hi: np.ndarray, plausible: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Interval of stakes from per-candidate intervals (at ``STAKES_CANDIDATE_LEVEL``):
    [max(0, max_{a!=b} lo_a - hi_b), max_{a!=b} hi_a - lo_b] over C+.

    Not the quantiles of max - min over draws: the maximum of noisy draws sits above the maximum
    of the true values, and those quantiles covered 58-60% where S is near 0 or 1 for every
    candidate. Deterministic candidates have lo = hi = their value. [0, 0] when |C+| < 2.
    """
    c = np.asarray(plausible, dtype=bool)
    lo, hi = _a(s_lo), _a(s_hi)
    pair = c[..., :, None] & c[..., None, :] & ~np.eye(c.shape[-1], dtype=bool)
    with np.errstate(invalid="ignore"):
        low = np.where(pair, lo[..., :, None] - hi[..., None, :], -np.inf).max((-2, -1))
        high = np.where(pair, hi[..., :, None] - lo[..., None, :], -np.inf).max((-2, -1))
    single = ~pair.any((-2, -1))
    missing = (c & (np.isnan(lo) | np.isnan(hi))).any(-1)
    low = np.where(single, 0.0, np.maximum(low, 0.0))
    high = np.where(single, 0.0, high)
    return np.where(missing, np.nan, low), np.where(missing, np.nan, high)


def reason_names(reason: np.ndarray) -> np.ndarray:
    """Reason codes -> object array of names (None where the score is defined)."""
    return np.array(NULL_REASONS, dtype=object)[np.asarray(reason, dtype=np.int64)]


def jeffreys_draws(
    s: np.ndarray,
    n: np.ndarray,
    draws: int,
    rng: np.random.Generator,
    deterministic: np.ndarray | None = None,
) -> np.ndarray:
    """B draws of S ~ Beta(s + 1/2, n - s + 1/2), independent per candidate: (B, *s.shape).

    The Jeffreys posterior, not a resample of outcomes: 0/N and N/N keep their uncertainty.
    Deterministic candidates (a forced EOS, a token that fills the budget: verified once, the
    outcome is certain) are drawn as exactly s / n. Slots with n = 0 (padding, or nothing
    judged) draw NaN; callers mask them.
    """
    s, n = _a(s), _a(n)
    if np.any(s < 0) or np.any(s > n):
        raise ValueError("success counts must satisfy 0 <= s <= n for every candidate")
    shape = np.broadcast(s, n).shape
    with np.errstate(invalid="ignore", divide="ignore"):
        # drawn candidate-major, so a candidate's draws do not depend on how many slots follow
        alpha = np.broadcast_to(s + 0.5, shape)[..., None]
        beta = np.broadcast_to(np.maximum(n - s, 0) + 0.5, shape)[..., None]
        out = np.moveaxis(rng.beta(alpha, beta, size=(*shape, draws)), -1, 0)
        out = np.where(n > 0, out, np.nan)
        if deterministic is not None:
            out = np.where(np.asarray(deterministic, dtype=bool), s / n, out)
    return out


def interval(
    x_draws: np.ndarray, lo: float = 0.05, hi: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) quantiles over draws (axis 0), ignoring NaN draws; NaN where all draws are NaN.

    Same values as np.nanquantile (linear interpolation), vectorised: nanquantile loops over
    columns in Python and was a tenth of a question's time.
    """
    x = np.sort(_a(x_draws), axis=0)  # NaN sorts last
    count = (~np.isnan(x)).sum(0)
    out = []
    for q in (lo, hi):
        h = q * np.maximum(count - 1, 0)
        below = np.floor(h).astype(np.int64)
        above = np.minimum(below + 1, np.maximum(count - 1, 0))
        a = np.take_along_axis(x, below[None], 0)[0]
        b = np.take_along_axis(x, above[None], 0)[0]
        v = a + (h - below) * (b - a)
        out.append(np.where(count > 0, v, np.nan))
    return out[0], out[1]


def bounds(level: float) -> tuple[float, float]:
    """Quantiles (lo, hi) of a central interval at ``level``: 0.9 -> (0.05, 0.95)."""
    if not 0 < level < 1:
        raise ValueError(f"interval level must be in (0, 1) (got {level})")
    return (1 - level) / 2, 1 - (1 - level) / 2


def label(lo: np.ndarray, hi: np.ndarray, decisive: np.ndarray, epsilon: float) -> np.ndarray:
    """'helps' / 'hurts' at a decisive node whose interval lies above +epsilon / below -epsilon,
    else 'neutral'; None where the interval is NaN (callers give a NULL score a NaN interval).

    A sign alone is not a label: at a node where nothing is at stake, or where the effect could
    be smaller than epsilon, nobody should act on the direction of the pull.
    """
    lo, hi, dec = np.broadcast_arrays(_a(lo), _a(hi), np.asarray(decisive, dtype=bool))
    out = np.full(lo.shape, "neutral", dtype=object)
    out[dec & (lo > epsilon)] = "helps"
    out[dec & (hi < -epsilon)] = "hurts"
    out[np.isnan(lo) | np.isnan(hi)] = None
    return out


BEST_REASONS: tuple[str | None, ...] = (None, "not_decisive", "tie", "no_teacher")
"""Why a node has no best teacher (index 0: it has one)."""


def best_teacher(
    point: np.ndarray,
    draws: np.ndarray,
    eligible: np.ndarray,
    decisive: np.ndarray,
    margin: float,
    share: float,
) -> dict[str, np.ndarray]:
    """The confident leader per node: it must beat the runner-up by ``margin`` in at least
    ``share`` of the paired draws, at a decisive node.

    Shapes: point (..., T), draws (B, ..., T), eligible broadcastable to (..., T) (False for
    controls), decisive (...). The leader is the eligible teacher with the highest non-NaN point
    score (ties to the lower index, config order). In a draw, a NaN score of the leader is a
    loss and a NaN score of another teacher is behind. With one eligible teacher, it leads.
    Returns ``index`` (-1 without a confident leader), ``leader`` (the point leader, -1 when
    no teacher is eligible), ``prob`` (share of draws with the leader ahead by ``margin``),
    ``point_margin`` (leader minus runner-up, point scores; NaN without a runner-up) and
    ``reason`` (codes into ``BEST_REASONS``).
    """
    pt = _a(point)
    dr = _a(draws)
    ok = np.asarray(eligible, dtype=bool) & ~np.isnan(pt)
    any_ok = ok.any(-1)
    leader = np.argmax(np.where(ok, pt, -np.inf), axis=-1)
    is_leader = np.arange(pt.shape[-1]) == leader[..., None]
    others = ok & ~is_leader
    runner_pt = np.where(others, pt, -np.inf).max(-1)
    lead_pt = np.take_along_axis(pt, leader[..., None], axis=-1)[..., 0]
    lead_draw = np.take_along_axis(
        dr, np.broadcast_to(leader, dr.shape[:-1])[..., None], axis=-1)[..., 0]
    runner_draw = np.where(others & ~np.isnan(dr), dr, -np.inf).max(-1)
    with np.errstate(invalid="ignore"):
        ahead = ~np.isnan(lead_draw) & (lead_draw - runner_draw >= margin)
    prob = np.where(any_ok, ahead.mean(0), np.nan)
    dec = np.asarray(decisive, dtype=bool)
    confident = any_ok & dec & (prob >= share)
    reason = np.select([~any_ok, ~dec, ~confident], [3, 1, 2], default=0).astype(np.int8)
    return {
        "index": np.where(confident, leader, -1),
        "leader": np.where(any_ok, leader, -1),
        "prob": prob,
        "point_margin": np.where(any_ok & np.isfinite(runner_pt), lead_pt - runner_pt, np.nan),
        "reason": reason,
    }


def half_estimates(
    s: np.ndarray,
    n: np.ndarray,
    s_half: np.ndarray,
    n_half: np.ndarray,
    mask: np.ndarray,
    deterministic: np.ndarray | None = None,
) -> np.ndarray:
    """S_hat from each half of the continuations, (2, P, K), exactly as the full estimate.

    Half a is the first n_half judged continuations (s_half successes), half b the rest.
    Padded slots are 0 (as in the full estimate: their p is 0); deterministic candidates carry
    their exact value in both halves; a real candidate with no judged continuation in a half has
    no S there (NaN), which makes that half's node scores NaN.
    """
    m = np.asarray(mask, dtype=bool)
    s, n, s_half, n_half = _a(s), _a(n), _a(s_half), _a(n_half)
    with np.errstate(invalid="ignore", divide="ignore"):
        halves = np.stack([s_half / n_half, (s - s_half) / (n - n_half)])
        if deterministic is not None:
            halves = np.where(np.asarray(deterministic, dtype=bool), s / n, halves)
    return np.where(m, halves, 0.0)


def crossfit_halves(
    p_cand: np.ndarray,
    mask: np.ndarray,
    s_halves: np.ndarray,
    q_cand: np.ndarray,
    d_cand: np.ndarray,
    d_norm2: np.ndarray,
    hd: np.ndarray,
    h_cand: np.ndarray,
    h_norm2: np.ndarray,
    ref_d_cand: np.ndarray,
    ref_d_norm2: np.ndarray,
    temperature: float = 1.0,
) -> dict[str, np.ndarray]:
    """advantage and edge from each half of the continuations, for the cross-fitted oracle.

    ``s_halves`` comes from ``half_estimates``, (2, P, K). Per-node quantities are (P, K) or
    (P,) (the sharpened reference ``ref_*`` among them); teacher quantities may carry leading
    dims such as (T, P, K), and results have them too: advantage_a/_b and edge_a/_b.
    """
    lead = np.ndim(q_cand) - np.ndim(p_cand)
    s_hat = s_halves.reshape(2, *([1] * lead), *s_halves.shape[1:])  # (2, ..., P, K)
    v_hat, g = ideal_direction(p_cand, s_hat, mask, temperature)
    adv = teacher_advantage(q_cand, s_hat, v_hat, mask)
    ref = sharpened_cos(g, ref_d_cand, ref_d_norm2, mask)
    edge = alignment(g, d_cand, d_norm2, hd, h_cand, h_norm2, mask, ref)["edge"]
    return {
        "advantage_a": adv[0],
        "advantage_b": adv[1],
        "edge_a": edge[0],
        "edge_b": edge[1],
    }
