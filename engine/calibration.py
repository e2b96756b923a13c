"""Coverage of the node-score intervals on synthetic nodes with known success probabilities.

method.md asks that the Jeffreys-draw intervals *actually* cover the true score 85-95% of the
time at nominal 90%, in four regimes: S uniform on [0, 1], mostly failing (S in [0, 0.1]),
mostly succeeding (S in [0.9, 1]) and N = 4 continuations. This module builds synthetic nodes
whose true S is known, simulates the judged continuations s ~ Binomial(N, S), computes every
interval exactly as ``engine.stages.node_scores.score_nodes`` does (the same ``engine.maths``
functions, the product's nominal levels) and counts how often it contains the value computed
from the true S. ``python -m engine.calibration`` prints the table quoted in docs/method.md.

A synthetic node lives in a small explicit vocabulary: K candidates (2..6, padded to
``K_MAX``) plus ``OUTSIDE`` tokens outside C that carry part of the student's mass, so |d|^2,
|h|^2 and <h, d> are full-vocabulary quantities as in the product (|d|^2 > |d on C|^2). The
directions come from ``maths.direction_stats`` / ``maths.sharpening_stats`` on those
distributions, and the edge's reference is the real sharpened student (the student's logits at
temperature ``SHARPENED_TEMPERATURE``), so every identity the scoring stage relies on holds.
Everything is vectorised over nodes and draws: thousands of nodes per regime take seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from engine import maths

__all__ = [
    "DRAWS",
    "K_MAX",
    "OUTSIDE",
    "REGIMES",
    "REVISION_1_LEVEL",
    "SCORES",
    "SHARPENED_TEMPERATURE",
    "Cell",
    "Regime",
    "SyntheticNodes",
    "coverage",
    "intervals",
    "main",
    "measure",
    "synthetic_nodes",
    "table",
    "true_scores",
]

SCORES = ("cos", "edge", "gain", "advantage", "stakes")
"""Scores whose coverage is measured; cos, edge and gain under the rank signal (reverse KL)."""

K_MAX = 6
"""Candidates per node are drawn from 2..K_MAX (the product pads C to the largest set)."""

OUTSIDE = 10
"""Tokens outside C per node: they carry the student's remaining mass, hence extra |d|, |h|."""

DRAWS = 200
"""Jeffreys draws per node, the product's default (``[scores] draws``)."""

SHARPENED_TEMPERATURE = 0.5
"""Temperature of the sharpened-student reference of the edge (the product's default)."""

PLAUSIBLE = 0.01
"""pi of C+ (``[scores] plausible`` default)."""

REVISION_1_LEVEL = 0.90
"""Revision 1: every interval at nominal 90%, stakes as quantiles of max - min over draws."""


@dataclass(frozen=True)
class Regime:
    """Where the true S of every candidate comes from, and how many continuations judge it."""

    name: str
    s_low: float
    s_high: float
    n: int
    description: str


REGIMES: dict[str, Regime] = {
    r.name: r
    for r in (
        Regime("uniform", 0.0, 1.0, 12, "S uniform on [0, 1], N = 12"),
        Regime("failing", 0.0, 0.1, 12, "mostly failing: S in [0, 0.1], N = 12"),
        Regime("succeeding", 0.9, 1.0, 12, "mostly succeeding: S in [0.9, 1], N = 12"),
        Regime("n4", 0.0, 1.0, 4, "S uniform on [0, 1], N = 4"),
    )
}
"""The four regimes of method.md (N = 12 is the demo's continuations per candidate)."""


@dataclass
class SyntheticNodes:
    """P synthetic nodes: the stored per-node quantities of the product plus what made them.

    Candidate arrays are (P, K_MAX), padded (mask False, p = 0, n = 0); the vocabulary arrays
    ``logp``/``logq`` are (P, K_MAX + OUTSIDE) with C at the first K_MAX slots (-inf: no mass).
    """

    regime: Regime
    logp: np.ndarray  # (P, V) student log p (p_samp = p_train, temperature 1)
    logq: np.ndarray  # (P, V) teacher log q
    mask: np.ndarray  # (P, K) bool
    p_cand: np.ndarray  # (P, K)
    q_cand: np.ndarray  # (P, K)
    d_cand: np.ndarray  # (P, K) the teacher's direction on C
    d_norm2: np.ndarray  # (P,) |d|^2 over V
    hd: np.ndarray  # (P,) <h, d> over V
    h_cand: np.ndarray  # (P, K)
    h_norm2: np.ndarray  # (P,)
    ref_d_cand: np.ndarray  # (P, K) the sharpened student's direction on C
    ref_d_norm2: np.ndarray  # (P,)
    sampled: np.ndarray  # (P, K) bool: the sampled token (one candidate)
    plausible: np.ndarray  # (P, K) bool: C+
    s_true: np.ndarray  # (P, K) true success probabilities (0 on padding)
    s: np.ndarray  # (P, K) successes among the n judged continuations
    n: np.ndarray  # (P, K) continuations judged (0 on padding)
    signal: str = "rkl"

    @property
    def s_hat(self) -> np.ndarray:
        """The product's point estimate s / n (0 on padding)."""
        return np.where(self.mask, self.s / np.maximum(self.n, 1), 0.0)


def synthetic_nodes(regime: Regime | str, nodes: int, rng: np.random.Generator,
                    signal: str = "rkl") -> SyntheticNodes:
    """Draw ``nodes`` synthetic nodes of one regime.

    Student p: mass 1 - m_out on C split by a Dirichlet(0.7) (a few small candidates, as teacher
    candidates are), m_out ~ U(0, 0.3) over the outside tokens. Teacher: log q = log p + noise
    + kappa S on C, kappa ~ U(-4, 8), so teachers range from misleading to well informed and
    cosines fill [-1, 1]. True S uniform on the regime's range, s ~ Binomial(N, S).
    """
    reg = REGIMES[regime] if isinstance(regime, str) else regime
    v = K_MAX + OUTSIDE
    k = rng.integers(2, K_MAX + 1, size=nodes)
    mask = np.arange(K_MAX) < k[:, None]
    m_out = rng.uniform(0.0, 0.3, size=nodes)
    p_c = np.where(mask, rng.gamma(0.7, size=(nodes, K_MAX)), 0.0)
    p_c = np.maximum(p_c, 1e-4 * mask)  # Dirichlet draws can underflow to 0 at alpha < 1
    p_c = p_c / p_c.sum(-1, keepdims=True) * (1 - m_out[:, None])
    p_o = rng.dirichlet(np.ones(OUTSIDE), size=nodes) * m_out[:, None]
    p = np.concatenate([p_c, p_o], axis=1)
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    s_true = np.where(mask, rng.uniform(reg.s_low, reg.s_high, size=(nodes, K_MAX)), 0.0)
    sigma = rng.uniform(0.3, 2.0, size=(nodes, 1))
    kappa = rng.uniform(-4.0, 8.0, size=(nodes, 1))
    zq = np.where(np.isneginf(logp), 0.0, logp) + sigma * rng.standard_normal((nodes, v))
    zq[:, :K_MAX] += kappa * s_true
    zq = np.where(np.isneginf(logp), -np.inf, zq)  # q lives where p does (any support is fine)
    logq = zq - np.logaddexp.reduce(zq, axis=1, keepdims=True)
    sampled_idx = np.array([rng.choice(K_MAX, p=row / row.sum()) for row in p_c])
    sampled = np.arange(K_MAX) == sampled_idx[:, None]

    lp, lq = torch.from_numpy(logp), torch.from_numpy(logq)
    cand_ids = torch.from_numpy(np.where(mask, np.arange(K_MAX), -1))
    h, h_cand, h_norm2 = maths.sharpening_stats(lp, cand_ids)
    sampled_ids = torch.from_numpy(sampled_idx)
    st = maths.direction_stats(signal, lp, lq, cand_ids, sampled_ids, h=h)
    sharp = torch.log_softmax(lp / SHARPENED_TEMPERATURE, -1)  # softmax(z / T') of the student
    ref = maths.direction_stats(signal, lp, sharp, cand_ids, sampled_ids, h=h)
    q_c = np.exp(logq[:, :K_MAX]) * mask
    n = np.where(mask, reg.n, 0)
    s = rng.binomial(n, s_true)
    return SyntheticNodes(
        reg, logp, logq, mask, p_c, q_c, st.d_cand.numpy(), st.d_norm2.numpy(), st.hd.numpy(),
        h_cand.numpy(), h_norm2.numpy(), ref.d_cand.numpy(), ref.d_norm2.numpy(), sampled,
        maths.plausible_set(p_c, q_c[None], sampled, mask, PLAUSIBLE), s_true, s, n, signal)


def _scores(nodes: SyntheticNodes, s_hat: np.ndarray) -> dict[str, np.ndarray]:
    """cos, edge, gain and advantage for S = s_hat, (..., P): the scoring stage's calls."""
    m = nodes.mask
    v_hat, g = maths.ideal_direction(nodes.p_cand, s_hat, m)
    ref = maths.sharpened_cos(g, nodes.ref_d_cand, nodes.ref_d_norm2, m)
    al = maths.alignment(g, nodes.d_cand, nodes.d_norm2, nodes.hd, nodes.h_cand, nodes.h_norm2,
                         m, ref)
    return {"cos": al["cos"], "edge": al["edge"], "gain": al["gain"],
            "advantage": maths.teacher_advantage(nodes.q_cand, s_hat, v_hat, m)}


def true_scores(nodes: SyntheticNodes) -> dict[str, np.ndarray]:
    """Every score computed from the true S, (P,) each: what an interval should contain.

    NaN where the true score is undefined (no signal, no direction) and, for stakes, where
    |C+| < 2 (stakes is exactly 0 with the interval [0, 0]: covered by construction).
    """
    out = _scores(nodes, nodes.s_true)
    st = maths.stakes(nodes.s_true, nodes.plausible)
    out["stakes"] = np.where(nodes.plausible.sum(-1) >= 2, st, np.nan)
    return out


def intervals(nodes: SyntheticNodes, rng: np.random.Generator, draws: int = DRAWS,
              levels: Mapping[str, float] | None = None, stakes_level: float | None = None,
              level: float | None = None) -> tuple[dict[str, np.ndarray],
                                                   dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(point scores, intervals) as the product computes them from the simulated s and n.

    ``levels`` / ``stakes_level`` default to ``maths.LEVELS`` / ``maths.STAKES_CANDIDATE_LEVEL``
    (pass others to tune them). ``level`` switches to revision 1's scheme for comparison: every
    score at that one level, stakes as the quantiles of max - min over the draws. A NULL point
    score gets a NULL interval, as in ``score_nodes``.
    """
    lv = dict(maths.LEVELS if levels is None else levels)
    s_hat = nodes.s_hat
    point = _scores(nodes, s_hat)
    point["stakes"] = maths.stakes(s_hat, nodes.plausible)
    s_draws = maths.jeffreys_draws(nodes.s, nodes.n, draws, rng)  # (B, P, K); NaN on padding
    by_draw = _scores(nodes, s_draws)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k, x in by_draw.items():
        out[k] = maths.interval(x, *maths.bounds(lv[k] if level is None else level))
    if level is None:
        cand = maths.interval(s_draws, *maths.bounds(
            maths.STAKES_CANDIDATE_LEVEL if stakes_level is None else stakes_level))
        out["stakes"] = maths.stakes_interval(*cand, nodes.plausible)
    else:
        out["stakes"] = maths.interval(maths.stakes(s_draws, nodes.plausible),
                                       *maths.bounds(level))
    for k, (lo, hi) in out.items():
        undefined = np.isnan(point[k])
        out[k] = (np.where(undefined, np.nan, lo), np.where(undefined, np.nan, hi))
    return point, out


class Cell(NamedTuple):
    """One table cell: the share of nodes covered and how many nodes it is over."""

    share: float
    nodes: int


def _rng(seed: int, regime: Regime, stream: int) -> np.random.Generator:
    """Independent streams per (seed, regime, purpose): regimes do not share nodes."""
    return np.random.default_rng([seed, list(REGIMES).index(regime.name), stream])


def measure(regime: Regime | str, nodes: int = 3000, seed: int = 0, *, draws: int = DRAWS,
            levels: Mapping[str, float] | None = None, stakes_level: float | None = None,
            level: float | None = None, signal: str = "rkl") -> dict[str, Cell]:
    """Coverage per score with the number of nodes it is over.

    A node counts for a score when both the true value and the product's point estimate are
    defined (a NULL point score has no interval to judge). The same nodes serve every level
    scheme for a given seed, so product and revision-1 rows differ only in the intervals.
    """
    reg = REGIMES[regime] if isinstance(regime, str) else regime
    syn = synthetic_nodes(reg, nodes, _rng(seed, reg, 0), signal)
    truth = true_scores(syn)
    _, iv = intervals(syn, _rng(seed, reg, 1), draws, levels, stakes_level, level)
    out = {}
    for k in SCORES:
        lo, hi = iv[k]
        used = ~np.isnan(truth[k]) & ~np.isnan(lo)
        # a tolerance of float rounding: stakes of a deterministic-like interval can be exact
        hit = (lo[used] <= truth[k][used] + 1e-12) & (truth[k][used] <= hi[used] + 1e-12)
        out[k] = Cell(float(hit.mean()) if used.any() else math.nan, int(used.sum()))
    return out


def coverage(regime: Regime | str, nodes: int = 3000, seed: int = 0, **kwargs: object
             ) -> dict[str, float]:
    """Share of synthetic nodes whose interval contains the true score, per score.

    Keyword arguments go to ``measure`` (``levels``, ``stakes_level``, ``level``, ``draws``).
    """
    return {k: c.share for k, c in measure(regime, nodes, seed, **kwargs).items()}  # type: ignore[arg-type]


def table(nodes: int = 3000, seed: int = 0, markdown: bool = False) -> str:
    """The coverage table: the product's levels per regime, then revision 1's for comparison."""
    rows = []
    for scheme, kw in (("product", {}), ("revision 1", {"level": REVISION_1_LEVEL})):
        for name in REGIMES:
            rows.append((scheme, name, measure(name, nodes, seed, **kw)))  # type: ignore[arg-type]
    head = ["levels", "regime", *SCORES, "nodes (cos / stakes)"]
    body = [[scheme, name, *(f"{cells[k].share:.3f}" for k in SCORES),
             f"{cells['cos'].nodes} / {cells['stakes'].nodes}"] for scheme, name, cells in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True))
                     for r in (head, *body))


def main() -> None:
    """Print the coverage table (deterministic for a seed) and how long it took."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m engine.calibration", description=__doc__)
    ap.add_argument("--nodes", type=int, default=3000, help="synthetic nodes per regime")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"coverage of the node-score intervals ({args.nodes} nodes per regime, seed "
          f"{args.seed}, {DRAWS} Jeffreys draws); levels {maths.LEVELS}, stakes candidates at "
          f"{maths.STAKES_CANDIDATE_LEVEL}; revision 1: all at {REVISION_1_LEVEL}, stakes as "
          "quantiles over draws")
    print(table(args.nodes, args.seed, args.markdown))
    print(f"runtime {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
