"""Synthetic run databases for TUI tests and benchmarks, written without any model.

The numbers are random but obey the method's identities. Each probed node gets a real, small
vocabulary: its candidates plus REST "other" tokens that share the outside mass equally under p
and under every q. So p, q, g, h and every direction d are true vectors, and every stored score
is computed from them by the engine's own functions (`engine.maths`: entropy, h, directions,
proxies on the vocabulary made explicit; g, cosines, edge, beyond, advantage and the halves on the
candidates), so the fixture cannot drift from the method; docs/schema.md's SQL recomputes them
from the stored components. Only the intervals, the paired draws behind best_prob, timings and
texts are invented (cheaply, but consistently: labels follow the intervals and the engine's
rules, `maths.label` and `maths.best_teacher`).

Revision 2 of method.md holds exactly (thresholds: RULES, the engine's defaults): C+
(`candidates.plausible`) is p >= pi or a non-control q >= pi or the sampled token; stakes =
max - min of S_hat over C+ and a node is decisive at stakes >= tau_stakes; cos_sharp is the
`ctrl_sharpened` row's cosine under each signal (cos(g, h) under reverse KL; every fixture has
that control, so docs/schema.md's edge SQL recomputes it); edge = cos - coalesce(cos_sharp,
0); beyond is NULL (`sharpening_dominated`) when a residual share is below rho; helps / hurts
need a decisive node and an interval beyond +-epsilon; a best teacher needs a decisive node and
a lead of the margin in leader_share of the draws. A share of the nodes is "quiet" (the
student's alternatives are implausible and every plausible candidate ends like the sampled
token), so non-decisive nodes with signal exist, as in real runs where most are not decisive.

Generation is vectorised per batch of questions and streamed into DuckDB through Arrow in key
order, so 10M tokens fit in bounded memory; the file appears atomically (temp name, rename).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from engine import maths
from engine.inputs.config import ScoreConfig
from engine.rng import generator, sequence_key
from engine.runfile import schema
from engine.runfile.names import CONTROL_SHARPENED, CONTROL_SOFTENED, CONTROLS
from engine.runfile.summaries import materialise_summaries

REST = 1000  # virtual tokens outside the candidate set
VOCAB_CHUNK = 2048  # nodes per explicit-vocabulary buffer (bounds memory)
N_CONT = 8  # continuations per candidate
STUDENT_TOP_K = 4
JSD_BETA = 0.5
FAMILIES = ("algebra", "geometry", "number_theory", "counting")
BATCH_TOKENS = 200_000  # tokens per generation batch (bounds memory)
BATCH_ROWS = 3_000_000  # candidate x teacher rows per batch
EOS = "<eos>"
RULES = ScoreConfig()  # meta score_rules: the engine's defaults
STAKES_Z = float(NormalDist().inv_cdf(0.5 + maths.STAKES_CANDIDATE_LEVEL / 2))
BEST_DRAWS = 32  # invented paired draws behind best_prob
QUIET_SHARE = 0.45

_WORDS = (
    " the", " answer", " is", " Let", " x", " =", " +", " -", " so", ".", ",", ":", "(", ")",
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", " 12", " 42", "Step", " therefore",
    "\\frac", "{", "}", "$", " 好", " 🙂", "é",
)
_TRICKY = (
    " ", "  ", "\n", "\n\n", "\t", "[bold]", "[/bold]", "[link=https://x]", "\x1b[31m", "\x1b[0m",
    "\x07", "\x08", "\r", "\x7f", "ab" * 150,
)
_PARTIAL_UTF8 = (b"\xe2\x82", b"\xac")  # halves of a multi-byte character: text shows U+FFFD
_CONTINUATIONS = (
    " 12 + 30 = 42, so the answer is 42.",
    " Let x = 3; then 2x + 1 = 7. Answer: 7",
    "\nStep 2: divide both sides by 4 [bold]=[/bold] 5",
    " therefore $\\frac{1}{2}$\t(answer)",
    " 5 - 9 = -4 \x1b[31mwrong sign\x1b[0m, answer -4",
)


@dataclass(frozen=True)
class Vocab:
    text: pa.Array  # string
    raw: pa.Array  # binary
    special: np.ndarray  # bool
    weight: np.ndarray  # sampling weight of each non-special id

    @property
    def eos(self) -> int:
        return len(self.special) - 1


def make_vocab() -> Vocab:
    """A small vocabulary holding every kind of token text a terminal can trip over."""
    entries = [(w, w.encode(), False, 8.0) for w in _WORDS]
    entries += [(w, w.encode(), False, 1.0) for w in _TRICKY]
    entries += [("\ufffd", b, False, 1.0) for b in _PARTIAL_UTF8]
    entries.append((EOS, EOS.encode(), True, 0.0))
    weight = np.array([e[3] for e in entries[:-1]])
    return Vocab(
        text=pa.array([e[0] for e in entries], pa.string()),
        raw=pa.array([e[1] for e in entries], pa.binary()),
        special=np.array([e[2] for e in entries]),
        weight=weight / weight.sum(),
    )


@dataclass(frozen=True)
class TeacherModel:
    """How a synthetic teacher's log q departs from the student's log p at the candidates."""

    name: str
    kind: str  # external | self | control
    sharpness: float  # log q = sharpness * log p + knowledge * (2 pi - 1) + noise
    knowledge: float
    noise: float
    families: tuple[int, ...] | None = None  # a specialist knows only these families

    @property
    def is_control(self) -> bool:
        return self.kind == "control"


def teacher_models(names: Sequence[str]) -> list[TeacherModel]:
    """Configured teachers, then the controls (softened only when an external teacher exists)."""
    presets = {
        "strong": ("external", 1.3, 3.0, 0.4, None),
        "specialist": ("external", 1.2, 3.0, 0.5, (0, 1)),
        "self_answer": ("self", 1.1, 2.0, 0.8, None),
    }
    models = []
    for name in names:
        if name in CONTROLS:
            raise ValueError(f"teacher name {name!r} is reserved for a control; rename it")
        h = int(hashlib.blake2b(name.encode(), digest_size=2).hexdigest(), 16) / 65535
        kind, sharp, know, noise, fams = presets.get(
            name, ("self" if name.startswith("self") else "external", 1.2, 0.5 + 2 * h, 0.6, None)
        )
        models.append(TeacherModel(name, kind, sharp, know, noise, fams))
    models.append(TeacherModel(CONTROL_SHARPENED, "control", 2.0, 0.0, 0.0))
    if any(m.kind == "external" for m in models):
        models.append(TeacherModel(CONTROL_SOFTENED, "control", 0.5, 0.0, 0.0))
    return models


# ---------------------------------------------------------------------------------------------
# The virtual vocabulary, K candidates (axis -1) + REST equal "other" tokens, for engine.maths


def _log_normalise(lc: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-probabilities of candidates (N, K) and of one "other" token (N,) from logits."""
    top = np.maximum(lc.max(-1), lo)
    log_z = top + np.log(np.exp(lc - top[:, None]).sum(-1) + REST * np.exp(lo - top))
    return lc - log_z[:, None], lo - log_z


def _explicit(log_c: np.ndarray, log_o: np.ndarray) -> torch.Tensor:
    """The virtual vocabulary made explicit for engine.maths: (N, K + REST) log-probabilities,
    the K candidates first, then REST copies of the "other" token."""
    rest = torch.from_numpy(np.ascontiguousarray(log_o, dtype=np.float64))[:, None]
    return torch.cat([torch.from_numpy(np.ascontiguousarray(log_c, dtype=np.float64)),
                      rest.expand(-1, REST)], dim=1)


def direction(
    signal: str, p: np.ndarray, po: np.ndarray, q: np.ndarray, qo: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`maths.direction` at the candidates (N, K) and at each "other" token (N,).

    The sampled token is candidate 0.
    """
    k = p.shape[-1]
    sampled = torch.zeros(p.shape[0], dtype=torch.long)
    d = maths.direction(signal, _explicit(np.log(p), np.log(po)),
                        _explicit(np.log(q), np.log(qo)), sampled, JSD_BETA).numpy()
    return d[:, :k], d[:, k]


PROXIES = ("teacher_entropy", "kl_pq", "kl_qp", "js", "teachability", "sampled_rank",
           "logq_sampled")
"""The per-teacher proxies of `maths.proxies` stored in node_teacher (student_entropy is the
token's entropy)."""


@dataclass
class _VocabStats:
    """What the scores need from the full vocabulary, computed by engine.maths (torch)."""

    entropy: np.ndarray  # (N,) H(p)
    h_cand: np.ndarray  # (N, K) h at the candidates
    h_norm2: np.ndarray  # (N,)
    d_cand: np.ndarray  # (T, F, N, K)
    d_norm2: np.ndarray  # (T, F, N)
    hd: np.ndarray  # (T, F, N)
    proxies: dict[str, np.ndarray]  # (T, N) each


def _vocab_stats(log_p: np.ndarray, log_po: np.ndarray,
                 logq: Sequence[tuple[np.ndarray, np.ndarray]],
                 signals: Sequence[str]) -> _VocabStats:
    """Entropy, h, every teacher's direction statistics and proxies, VOCAB_CHUNK nodes at a time
    (an explicit (chunk, K + REST) buffer per distribution), exactly as the scoring stage gets
    them: `maths.sharpening_stats`, `maths.direction_stats`, `maths.proxies`."""
    n, k = log_p.shape
    n_t, n_s = len(logq), len(signals)
    out = _VocabStats(np.empty(n), np.empty((n, k)), np.empty(n), np.empty((n_t, n_s, n, k)),
                      np.empty((n_t, n_s, n)), np.empty((n_t, n_s, n)),
                      {name: np.empty((n_t, n)) for name in PROXIES})
    for a in range(0, n, VOCAB_CHUNK):
        sl = slice(a, min(n, a + VOCAB_CHUNK))
        lp = _explicit(log_p[sl], log_po[sl])
        m = lp.shape[0]
        cand = torch.arange(k).expand(m, k)
        sampled = torch.zeros(m, dtype=torch.long)  # candidate 0
        h, h_cand, h2 = maths.sharpening_stats(lp, cand)
        out.entropy[sl] = maths.entropy(lp).numpy()
        out.h_cand[sl], out.h_norm2[sl] = h_cand.numpy(), h2.numpy()
        for ti, (lq_c, lq_o) in enumerate(logq):
            lq = _explicit(lq_c[sl], lq_o[sl])
            for si, sig in enumerate(signals):
                st = maths.direction_stats(sig, lp, lq, cand, sampled, JSD_BETA, h)
                out.d_cand[ti, si, sl] = st.d_cand.numpy()
                out.d_norm2[ti, si, sl], out.hd[ti, si, sl] = st.d_norm2.numpy(), st.hd.numpy()
            prox = maths.proxies(lp, lq, sampled, STUDENT_TOP_K)
            for name in PROXIES:
                out.proxies[name][ti, sl] = prox[name].numpy()
    return out


def _interval(rng: np.random.Generator, x: np.ndarray, width: np.ndarray, lo: float,
              hi: float) -> tuple[np.ndarray, np.ndarray]:
    """An invented but well-formed interval around x (the engine draws it from Jeffreys draws)."""
    a = np.clip(x - width * rng.uniform(0.5, 1.5, x.shape), lo, hi)
    b = np.clip(x + width * rng.uniform(0.5, 1.5, x.shape), lo, hi)
    return np.minimum(a, x), np.maximum(b, x)


def _labels(lo: np.ndarray, hi: np.ndarray, decisive: np.ndarray) -> pa.Array:
    """The engine's own labelling rule, so fixture and engine agree by construction."""
    return pa.array(maths.label(lo, hi, decisive, RULES.epsilon).tolist(), pa.string())


# ---------------------------------------------------------------------------------------------
# One batch of questions


@dataclass
class _Batch:
    qids: list[str]
    families: list[int]
    lengths: np.ndarray  # (questions, G)
    finished: np.ndarray
    correct: np.ndarray  # float: 1, 0, nan (unverifiable)


def _plan(rng: np.random.Generator, qids: list[str], families: list[int], rollouts: int,
          min_len: int, max_len: int, long_mask: np.ndarray, long_len: int) -> _Batch:
    lengths = rng.integers(min_len, max_len + 1, (len(qids), rollouts))
    lengths = np.where(long_mask, long_len, lengths)
    finished = (rng.random(lengths.shape) < 0.9) & ~long_mask
    difficulty = rng.uniform(0.1, 0.9, (len(qids), 1))
    correct = ((rng.random(lengths.shape) < difficulty) & finished).astype(np.float64)
    correct[rng.random(lengths.shape) < 0.03] = np.nan
    return _Batch(qids, families, lengths, finished, correct)


def _pa(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(values, mask=mask)


def _batch_tables(
    rng: np.random.Generator, b: _Batch, vocab: Vocab, models: list[TeacherModel],
    signals: Sequence[str], k: int, probed_share: float, tour: bool = False,
) -> Iterator[tuple[str, pa.Table]]:
    """Rows of every per-question table for one batch, in key order."""
    n_q, n_r = b.lengths.shape
    flat_len = b.lengths.ravel()
    total = int(flat_len.sum())
    roll_q = np.repeat(np.arange(n_q), n_r)  # per (question, rollout)
    roll_r = np.tile(np.arange(n_r), n_q)
    starts = np.concatenate([[0], np.cumsum(flat_len)[:-1]])
    tok_roll = np.repeat(np.arange(n_q * n_r), flat_len)
    pos = np.arange(total) - starts[tok_roll]
    qid_arr = pa.array(b.qids)

    token_id = rng.choice(len(vocab.weight), total, p=vocab.weight)
    if tour:  # every vocabulary entry at least once, so tests can rely on each tricky token
        shown = min(total, vocab.eos)
        token_id[:shown] = np.arange(shown)
    ends = starts + flat_len - 1
    token_id[ends[b.finished.ravel()]] = vocab.eos
    probed = rng.random(total) < probed_share
    logp = -rng.exponential(0.8, total)
    entropy = rng.gamma(2.0, 0.6, total)

    # ---- probed nodes: candidates, student p, success, g, h -----------------------------------
    node_tok = np.flatnonzero(probed)
    n_n = node_tok.size
    node_roll = tok_roll[node_tok]
    correct_node = b.correct.ravel()[node_roll]
    lc = rng.normal(0.0, 1.5, (n_n, k))
    lc[:, 0] += 1.0
    quiet = rng.random(n_n) < QUIET_SHARE  # the student's alternatives are implausible here
    lc[quiet, 1:] -= 7.0
    lo_ = np.log(rng.beta(1.0, 8.0, n_n) * 0.3 + 1e-3) - np.log(REST) + 2.0
    log_p, log_po = _log_normalise(lc, lo_)
    p = np.exp(log_p)
    m_s = p.sum(-1)
    logp[node_tok] = log_p[:, 0]

    base = np.where(np.nan_to_num(correct_node, nan=0.5) > 0.5, 0.75, 0.3)
    logit = np.log(base / (1 - base))[:, None] + rng.normal(0.0, 1.8, (n_n, k))
    decided = rng.random(n_n) < 0.15  # the outcome no longer depends on this token: g = 0
    logit[decided] += np.where(base[decided] > 0.5, 9.0, -9.0)[:, None]
    pi = 1 / (1 + np.exp(-logit))  # true success probabilities (what teachers "know")

    # ---- teachers ------------------------------------------------------------------------------
    family = np.asarray(b.families)[roll_q[node_roll]]
    logq_of: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    first_external = next((m.name for m in models if m.kind == "external"), None)
    for m in models:
        if m.name == CONTROL_SOFTENED and first_external is not None:
            lq, lqo = logq_of[first_external]
            lq, lqo = _log_normalise(m.sharpness * lq, m.sharpness * lqo)
        else:
            know = np.full(n_n, m.knowledge)
            if m.families is not None:
                know = np.where(np.isin(family, m.families), know, -0.5)
            lq, lqo = _log_normalise(
                m.sharpness * log_p + know[:, None] * (2 * pi - 1)
                + m.noise * rng.normal(size=(n_n, k)),
                m.sharpness * log_po + m.noise * rng.normal(size=n_n),
            )
        logq_of[m.name] = (lq, lqo)
    q_of = {name: np.exp(lq) for name, (lq, _) in logq_of.items()}  # at the candidates

    # ---- outcomes, C+ and stakes ---------------------------------------------------------------
    mask = np.ones((n_n, k), bool)  # every slot is a real candidate
    is_sampled = np.zeros((n_n, k), bool)
    is_sampled[:, 0] = True
    q_plus = np.stack([q_of[m.name] for m in models if not m.is_control])
    plausible = maths.plausible_set(p, q_plus, is_sampled, mask, RULES.plausible)
    s = rng.binomial(N_CONT, pi)
    # at a quiet node every plausible candidate ends like the sampled token: nothing at stake
    s = np.where(quiet[:, None] & plausible, s[:, :1], s)
    n_half = N_CONT // 2
    s_half = rng.hypergeometric(np.maximum(s, 0), N_CONT - s, n_half) if n_n else s
    s_hat = s / N_CONT
    stakes = maths.stakes(s_hat, plausible)
    sd = np.sqrt((s + 0.5) * (N_CONT - s + 0.5) / (N_CONT + 1) ** 2 / (N_CONT + 2))
    post_mean = (s + 0.5) / (N_CONT + 1)
    stakes_lo, stakes_hi = maths.stakes_interval(
        np.clip(post_mean - STAKES_Z * sd, 0, 1), np.clip(post_mean + STAKES_Z * sd, 0, 1),
        plausible)
    decisive = stakes >= RULES.tau_stakes

    # ---- the scores, by the engine's own maths -------------------------------------------------
    order_t = sorted(range(len(models)), key=lambda i: models[i].name)
    order_s = sorted(signals)
    teachers_sorted = [models[i] for i in order_t]
    n_t, n_s = len(models), len(order_s)
    full = _vocab_stats(log_p, log_po, [logq_of[m.name] for m in teachers_sorted], order_s)
    entropy[node_tok] = full.entropy
    h, h2 = full.h_cand, full.h_norm2
    v_hat, g = maths.ideal_direction(p, s_hat, mask)
    no_signal = (g == 0).all(-1)
    g2, gh = (g**2).sum(-1), (g * h).sum(-1)
    # the sharpened student's cosine under each signal: the edge's reference (cos_sharp), (F, N)
    sh = [m.name for m in teachers_sorted].index(CONTROL_SHARPENED)
    cos_sharp = maths.sharpened_cos(g, full.d_cand[sh], full.d_norm2[sh], mask)
    q_all = np.stack([q_of[m.name] for m in teachers_sorted])  # (T, N, K)
    advantage = maths.teacher_advantage(q_all, s_hat, v_hat, mask)  # (T, N)
    fb = order_s.index("rkl") if "rkl" in order_s else 0  # meta rank_signal: rkl
    halves = maths.crossfit_halves(
        p, mask, maths.half_estimates(s, np.full_like(s, N_CONT), s_half,
                                      np.full_like(s, n_half), mask),
        q_all, full.d_cand[:, fb], full.d_norm2[:, fb], full.hd[:, fb], h, h2,
        full.d_cand[sh, fb], full.d_norm2[sh, fb])
    width = rng.uniform(0.05, 0.6, n_n)  # per-node interval width, shared by teachers (paired)

    d_cols = {sig: np.zeros((n_n, n_t, k)) for sig in schema.SIGNALS}
    sc = {c: np.full((n_n, n_t, n_s), np.nan) for c in (
        "d_norm2", "hd", "gain", "cos", "cos_c", "cos_sharp", "edge", "beyond",
        "d_residual_share", "cos_lo", "cos_hi", "edge_lo", "edge_hi", "beyond_lo", "beyond_hi",
        "gain_lo", "gain_hi", "param_cos")}
    reason = np.zeros((n_n, n_t, n_s), np.int8)  # codes into maths.NULL_REASONS
    g_share = np.full(n_n, np.nan)
    nt_cols: dict[str, np.ndarray] = {
        "m_c": q_all.sum(-1).T, "advantage": advantage.T,
        "advantage_a": halves["advantage_a"].T, "advantage_b": halves["advantage_b"].T,
        **{name: v.T for name, v in full.proxies.items() if name != "sampled_rank"},
        "sampled_rank": full.proxies["sampled_rank"].T.astype(np.int32),
        "advantage_lo": np.full((n_n, n_t), np.nan), "advantage_hi": np.full((n_n, n_t), np.nan),
    }
    if "rkl" in order_s:
        nt_cols.update(edge_a=halves["edge_a"].T, edge_b=halves["edge_b"].T)
    edge_rkl = {}
    for ti, m in enumerate(teachers_sorted):
        al = maths.alignment(g, full.d_cand[ti], full.d_norm2[ti], full.hd[ti], h, h2, mask,
                             cos_sharp, RULES.rho)  # (F, N) each
        g_share = np.broadcast_to(al["g_share"], (n_s, n_n))[0]  # depends on g and h only
        for si, sig in enumerate(order_s):
            d_cols[sig][:, ti] = full.d_cand[ti, si]
            d2, gd, cos, edge = full.d_norm2[ti, si], al["gain"][si], al["cos"][si], al["edge"][si]
            reason[:, ti, si] = al["reason"][si]
            cos_lo, cos_hi = _interval(rng, cos, width, -1, 1)
            if m.name == CONTROL_SHARPENED:  # the reference itself: edge 0 in every draw
                edge_lo, edge_hi = edge, edge
            else:
                edge_lo, edge_hi = _interval(rng, edge, width, -2, 2)
            b_lo, b_hi = _interval(rng, al["beyond"][si], width, -1, 1)
            scale = np.sqrt(g2 * d2)
            gain_lo, gain_hi = _interval(rng, gd, width * scale, -np.inf, np.inf)
            param = np.where(rng.random(n_n) < 0.02, np.clip(cos + rng.normal(0, 0.1, n_n), -1, 1),
                             np.nan)
            for name, val in (("d_norm2", d2), ("hd", full.hd[ti, si]), ("gain", gd),
                              ("cos", cos), ("cos_c", al["cos_c"][si]),
                              ("cos_sharp", cos_sharp[si]), ("edge", edge),
                              ("beyond", al["beyond"][si]), ("d_residual_share", al["d_share"][si]),
                              ("cos_lo", cos_lo), ("cos_hi", cos_hi), ("edge_lo", edge_lo),
                              ("edge_hi", edge_hi), ("beyond_lo", b_lo), ("beyond_hi", b_hi),
                              ("gain_lo", gain_lo), ("gain_hi", gain_hi), ("param_cos", param)):
                sc[name][:, ti, si] = val
            if sig == "rkl":
                edge_rkl[m.name] = edge
        lo, hi = _interval(rng, advantage[ti], width * 0.2, -1, 1)
        nt_cols["advantage_lo"][:, ti], nt_cols["advantage_hi"][:, ti] = lo, hi

    # ---- best teacher per node: the engine's rule on invented paired draws ---------------------
    learners = [m.name for m in teachers_sorted if not m.is_control]
    point = np.stack([edge_rkl.get(t, np.full(n_n, np.nan)) for t in learners], -1)
    draws = point + width[None, :, None] * rng.normal(size=(BEST_DRAWS, *point.shape))
    best = maths.best_teacher(point, draws, np.ones(len(learners), bool), decisive,
                              RULES.margin, RULES.leader_share)
    best_idx = best["index"]
    best_reason = np.array(maths.BEST_REASONS, dtype=object)[best["reason"].astype(np.int64)]

    node_key = {
        "question_id": pc.take(qid_arr, pa.array(roll_q[node_roll])),
        "rollout": roll_r[node_roll].astype(np.int16),
        "pos": pos[node_tok].astype(np.int32),
    }
    yield "tokens", _table("tokens", {
        "question_id": pc.take(qid_arr, pa.array(roll_q[tok_roll])),
        "rollout": roll_r[tok_roll].astype(np.int16), "pos": pos.astype(np.int32),
        "token_id": token_id.astype(np.int32),
        "token_text": pc.take(vocab.text, pa.array(token_id)),
        "token_bytes": pc.take(vocab.raw, pa.array(token_id)),
        "is_special": vocab.special[token_id], "logp": logp, "entropy": entropy,
        "probed": probed,
    })
    yield "nodes", _table("nodes", {
        **node_key, "v_hat": v_hat, "value_change": s_hat[:, 0] - v_hat, "m_s": m_s,
        "n_candidates": np.full(n_n, k, np.int16), "n_cont": np.full(n_n, N_CONT, np.int32),
        "g_norm2": g2, "h_norm2": h2, "gh": gh, "g_residual_share": _pa(g_share, np.isnan(g_share)),
        "n_plausible": plausible.sum(-1).astype(np.int16), "stakes": stakes,
        "stakes_lo": stakes_lo, "stakes_hi": stakes_hi, "decisive": decisive,
        "null_reason": pa.array(np.where(no_signal, "no_signal", None)),
        "best_teacher": pc.take(pa.array(learners), pa.array(best_idx, mask=best_idx < 0)),
        "best_prob": _pa(best["prob"], np.isnan(best["prob"])),
        "best_margin": _pa(best["point_margin"], np.isnan(best["point_margin"])),
        "best_reason": pa.array(best_reason.tolist(), pa.string()),
    })

    # candidates: (node, cand)
    cand_id = (token_id[node_tok][:, None] + np.arange(k) * 7) % vocab.eos
    cand_id[:, 0] = token_id[node_tok]
    student_rank = np.argsort(np.argsort(-p, -1), -1)
    src = np.where(student_rank < STUDENT_TOP_K, 1, 2)
    src[:, 0] = np.where(student_rank[:, 0] < STUDENT_TOP_K, 3, 0)
    first_learner = learners[0]
    sources = pa.array(["sampled", "student", first_learner, "sampled,student"])
    cont = pa.array(_CONTINUATIONS)
    rep = {key: _repeat(val, k) for key, val in node_key.items()}
    succ_pick = rng.integers(0, len(_CONTINUATIONS), (n_n, k)).ravel()
    fail_pick = rng.integers(0, len(_CONTINUATIONS), (n_n, k)).ravel()
    z = float(NormalDist().inv_cdf(0.5 + maths.LEVELS["s"] / 2)) * sd
    yield "candidates", _table("candidates", {
        **rep, "cand": np.tile(np.arange(k, dtype=np.int16), n_n),
        "token_id": cand_id.ravel().astype(np.int32),
        "token_text": pc.take(vocab.text, pa.array(cand_id.ravel())),
        "is_sampled": np.tile(np.arange(k) == 0, n_n), "sources": pc.take(sources, src.ravel()),
        "plausible": plausible.ravel(),
        "p": p.ravel(), "s": s.ravel().astype(np.int32),
        "n": np.full(n_n * k, N_CONT, np.int32), "s_half": s_half.ravel().astype(np.int32),
        "n_half": np.full(n_n * k, n_half, np.int32),
        "n_unverifiable": np.zeros(n_n * k, np.int32), "deterministic": np.zeros(n_n * k, bool),
        "s_hat": s_hat.ravel(),
        "s_lo": np.clip(post_mean - z, 0, 1).ravel(), "s_hi": np.clip(post_mean + z, 0, 1).ravel(),
        "g": g.ravel(), "h": h.ravel(),
        "text_success": pc.take(cont, pa.array(succ_pick, mask=s.ravel() == 0)),
        "text_failure": pc.take(cont, pa.array(fail_pick, mask=s.ravel() == N_CONT)),
    })

    # candidate_teacher: (node, cand, teacher)
    names = pa.array([m.name for m in teachers_sorted])
    off = set(schema.SIGNALS) - set(signals)
    yield "candidate_teacher", _table("candidate_teacher", {
        **{key: _repeat(val, k * n_t) for key, val in node_key.items()},
        "cand": np.tile(np.repeat(np.arange(k, dtype=np.int16), n_t), n_n),
        "teacher": pc.take(names, pa.array(np.tile(np.arange(n_t), n_n * k))),
        "q": np.moveaxis(q_all, 0, -1).ravel(),
        **{f"d_{sig}": _pa(np.swapaxes(d_cols[sig], 1, 2).ravel(),
                           np.full(n_n * k * n_t, sig in off)) for sig in schema.SIGNALS},
    })
    yield "node_teacher", _table("node_teacher", {
        **{key: _repeat(val, n_t) for key, val in node_key.items()},
        "teacher": pc.take(names, pa.array(np.tile(np.arange(n_t), n_n))),
        **{c: _pa(v.ravel(), np.isnan(v.ravel()) if v.dtype.kind == "f" else None)
           for c, v in nt_cols.items()},
    })
    flat = n_n * n_t * n_s
    reasons = reason.ravel()
    dec_rows = np.repeat(decisive, n_t * n_s)
    yield "scores", _table("scores", {
        **{key: _repeat(val, n_t * n_s) for key, val in node_key.items()},
        "teacher": pc.take(names, pa.array(np.tile(np.repeat(np.arange(n_t), n_s), n_n))),
        "signal": pc.take(pa.array(order_s), pa.array(np.tile(np.arange(n_s), n_n * n_t))),
        **{c: _pa(v.ravel(), np.isnan(v.ravel())) for c, v in sc.items()},
        "label": _labels(sc["cos_lo"].ravel(), sc["cos_hi"].ravel(), dec_rows),
        "label_edge": _labels(sc["edge_lo"].ravel(), sc["edge_hi"].ravel(), dec_rows),
        "label_beyond": _labels(sc["beyond_lo"].ravel(), sc["beyond_hi"].ravel(), dec_rows),
        "null_reason": pc.take(pa.array(maths.NULL_REASONS[1:], pa.string()),
                               pa.array(np.maximum(reasons - 1, 0), mask=reasons == 0)),
    }) if flat else _table("scores", {})


def _repeat(val: pa.Array | np.ndarray, times: int) -> pa.Array | np.ndarray:
    if isinstance(val, np.ndarray):
        return np.repeat(val, times)
    return pc.take(val, pa.array(np.repeat(np.arange(len(val)), times)))


def _table(name: str, cols: dict) -> pa.Table:
    """Columns in the schema's order; columns not given (and not known) are all NULL."""
    t = schema.TABLE_BY_NAME[name]
    n = next((len(v) for v in cols.values()), 0)
    arrays = [cols[c] if c in cols else pa.nulls(n) for c in t.column_names]
    return pa.table(dict(zip(t.column_names, arrays, strict=True)))


# ---------------------------------------------------------------------------------------------
# Run-level tables and the driver


def _run_tables(models: list[TeacherModel], signals: Sequence[str], params: dict) -> dict:
    teachers = {
        "teacher": [m.name for m in models], "kind": [m.kind for m in models],
        "is_control": [m.is_control for m in models],
        "model": [f"fixtures/{m.name}" if m.kind == "external" else "fixtures/student"
                  for m in models],
        "template": ["Q:{question} A:" if m.kind != "self" else "Q:{question} ={final_answer} A:"
                     for m in models],
        "temperature": [1.0 / m.sharpness if m.is_control else 1.0 for m in models],
        "description": [f"synthetic {m.kind} teacher (knowledge {m.knowledge:.1f})"
                        for m in models],
        "ordinal": list(range(len(models))),
    }
    losses = {"rkl": "KL(p || q)", "fkl": "KL(q || p)", "jsd": "JSD(beta)",
              "sampled": "-(log q_y - log p_y) log p_y"}
    sig = {"signal": list(signals), "loss": [losses[s] for s in signals],
           "beta": [JSD_BETA if s == "jsd" else None for s in signals],
           "exact_split": [s == "rkl" for s in signals]}
    config = "\n".join(f"{k} = {json.dumps(v)}" for k, v in params.items())
    meta = {
        "schema_version": str(schema.SCHEMA_VERSION), "engine_version": "fixture",
        "config_toml": "# synthetic fixture (synthetic_runs)\n" + config,
        "config_hash": hashlib.sha256(config.encode()).hexdigest()[:16],
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": json.dumps({"generator": "synthetic_runs",
                                   "python": sys.version.split()[0]}),
        "fixture": json.dumps(params),
        "sampling_temperature": "1.0", "rank_signal": "rkl",
        "score_rules": json.dumps(RULES.model_dump()), "sharpened_temperature": "0.5",
        "interval_levels": json.dumps({**maths.LEVELS,
                                       "stakes_candidate": maths.STAKES_CANDIDATE_LEVEL}),
    }
    return {"teachers": teachers, "signals": sig,
            "meta": {"key": list(meta), "value": list(meta.values())}}


def _validate(questions: int, rollouts: int, min_len: int, max_len: int, long_rollouts: int,
              long_len: int, teachers: Sequence[str], signals: Sequence[str], candidates: int,
              probed_share: float) -> None:
    checks = [
        (questions >= 1, f"questions must be >= 1 (got {questions})"),
        (1 <= rollouts <= 32767, f"rollouts must be in 1..32767 (got {rollouts})"),
        (1 <= min_len <= max_len, f"need 1 <= min_len <= max_len (got {min_len}, {max_len})"),
        (0 <= long_rollouts <= questions * rollouts,
         f"long_rollouts must be in 0..questions*rollouts = {questions * rollouts} "
         f"(got {long_rollouts})"),
        (long_len >= 1, f"long_len must be >= 1 (got {long_len})"),
        (len(set(teachers)) == len(teachers) and len(teachers) > 0,
         "teachers must be a non-empty list of distinct names"),
        (set(signals) <= set(schema.SIGNALS) and len(signals) > 0,
         f"signals must be a non-empty subset of {', '.join(schema.SIGNALS)} "
         f"(got {', '.join(signals)})"),
        (2 <= candidates <= 40, f"candidates must be in 2..40 (got {candidates})"),
        (0.0 <= probed_share <= 1.0, f"probed_share must be in [0, 1] (got {probed_share})"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def write_fixture_db(
    path: str | os.PathLike[str], *, questions: int = 20, rollouts: int = 4, min_len: int = 20,
    max_len: int = 200, long_rollouts: int = 0, long_len: int = 32000,
    teachers: Sequence[str] = ("strong", "specialist", "self_answer"),
    signals: Sequence[str] = schema.SIGNALS, candidates: int = 6, probed_share: float = 1.0,
    seed: int = 0, failed_questions: int | None = None, draws: int = 200,
) -> Path:
    """Write a complete, schema-valid consolidated run database of random numbers.

    Controls (ctrl_sharpened, ctrl_softened) are added to `teachers`. `long_rollouts` rollouts,
    spread evenly over the run, have `long_len` tokens and hit the length limit. By default one
    question in twenty (at least one when there are two or more) is recorded as failed.
    """
    teachers, signals = tuple(teachers), tuple(signals)
    _validate(questions, rollouts, min_len, max_len, long_rollouts, long_len, teachers, signals,
              candidates, probed_share)
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {path.parent} does not exist; create it first")
    params = dict(questions=questions, rollouts=rollouts, min_len=min_len, max_len=max_len,
                  long_rollouts=long_rollouts, long_len=long_len, teachers=list(teachers),
                  signals=list(signals), candidates=candidates, probed_share=probed_share,
                  seed=seed)
    rng = generator(sequence_key(seed, "rollout", "fixture"))
    models = teacher_models(teachers)
    n_failed = (max(1, questions // 20) if questions >= 2 else 0) if failed_questions is None \
        else failed_questions
    failed = set(np.linspace(0, questions - 1, n_failed + 2)[1:-1].round().astype(int).tolist())
    ok_idx = [i for i in range(questions) if i not in failed]
    long_flat = np.zeros(len(ok_idx) * rollouts, bool)
    if long_rollouts:
        long_flat[np.linspace(0, long_flat.size - 1, long_rollouts).round().astype(int)] = True
    long_mask = long_flat.reshape(len(ok_idx), rollouts)
    families = rng.integers(0, len(FAMILIES), questions)

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    con.execute("SET enable_progress_bar = false")
    try:
        schema.create_tables(con)
        for name, cols in _run_tables(models, signals, params).items():
            _insert(con, name, _table(name, cols))
        q_rows: dict[str, list] = {c: [] for c in schema.TABLE_BY_NAME["questions"].column_names}
        r_rows: dict[str, list] = {c: [] for c in schema.TABLE_BY_NAME["rollouts"].column_names}
        tp_rows: dict[str, list] = {c: [] for c in
                                    schema.TABLE_BY_NAME["teacher_prompts"].column_names}
        vocab = make_vocab()
        per_node_rows = candidates * len(models)
        for lo_i, hi_i in _batches(long_mask, rollouts, long_len, (min_len + max_len) / 2,
                                   probed_share * per_node_rows):
            idx = ok_idx[lo_i:hi_i]
            qids = [f"q{i:05d}" for i in idx]
            batch = _plan(rng, qids, [int(families[i]) for i in idx], rollouts, min_len, max_len,
                          long_mask[lo_i:hi_i], long_len)
            tables = dict(_batch_tables(rng, batch, vocab, models, signals, candidates,
                                        probed_share, tour=lo_i == 0))
            for name in ("tokens", "nodes", "candidates", "candidate_teacher", "node_teacher",
                         "scores"):
                _insert(con, name, tables[name])
            _collect_question_rows(batch, tables["tokens"], idx, models, candidates, q_rows,
                                   r_rows, tp_rows)
        for i in sorted(failed):
            _failed_question(q_rows, i, int(families[i]))
        for name, rows in (("questions", q_rows), ("rollouts", r_rows),
                           ("teacher_prompts", tp_rows)):
            key = schema.TABLE_BY_NAME[name].key
            order = sorted(range(len(rows[key[0]])), key=lambda i: tuple(rows[c][i] for c in key))
            _insert(con, name, _table(name, {c: [v[i] for i in order] for c, v in rows.items()}))
        _insert_stages(con)
        materialise_summaries(con, draws=draws, seed=seed)
        schema.create_views(con)
        con.execute("CHECKPOINT")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    os.replace(tmp, path)
    return path


def _batches(long_mask: np.ndarray, rollouts: int, long_len: int, mean_len: float,
             rows_per_token: float) -> Iterator[tuple[int, int]]:
    """Consecutive question ranges whose expected tokens and rows stay under the batch caps."""
    est = (rollouts - long_mask.sum(1)) * mean_len + long_mask.sum(1) * long_len
    start, tokens = 0, 0.0
    for i, t in enumerate(est):
        if i > start and (tokens + t > BATCH_TOKENS or (tokens + t) * rows_per_token > BATCH_ROWS):
            yield start, i
            start, tokens = i, 0.0
        tokens += t
    if start < len(est):
        yield start, len(est)


def _collect_question_rows(b: _Batch, tokens: pa.Table, idx: list[int],
                           models: list[TeacherModel], k: int, q_rows: dict, r_rows: dict,
                           tp_rows: dict) -> None:
    text = np.asarray(tokens.column("token_text").to_numpy(zero_copy_only=False), dtype=object)
    probed = tokens.column("probed").to_numpy(zero_copy_only=False)
    bounds = np.concatenate([[0], np.cumsum(b.lengths.ravel())])
    for qi, (qid, i) in enumerate(zip(b.qids, idx, strict=True)):
        n_nodes, n_correct = 0, 0
        for r in range(b.lengths.shape[1]):
            j = qi * b.lengths.shape[1] + r
            lo, hi = bounds[j], bounds[j + 1]
            c = b.correct[qi, r]
            nodes = int(probed[lo:hi].sum())
            n_nodes += nodes
            n_correct += int(c == 1)
            r_rows["question_id"].append(qid)
            r_rows["rollout"].append(r)
            r_rows["correct"].append(None if np.isnan(c) else bool(c))
            r_rows["verdict"].append("unverifiable" if np.isnan(c) else
                                     ("correct" if c else "incorrect"))
            r_rows["verifier_detail"].append("synthetic verdict")
            r_rows["n_tokens"].append(int(hi - lo))
            r_rows["finished"].append(bool(b.finished[qi, r]))
            r_rows["prompt"].append(f"Q:synthetic question {i} A:")
            r_rows["completion"].append("".join(text[lo:hi]))
        n_tok = int(bounds[(qi + 1) * b.lengths.shape[1]] - bounds[qi * b.lengths.shape[1]])
        cont = n_nodes * N_CONT * k
        for c, v in (("question_id", qid), ("idx", i), ("family", FAMILIES[b.families[qi]]),
                     ("question", f"synthetic question {i}: what is {i} + {2 * i}?"),
                     ("solution", f"{i} + {2 * i} = {3 * i}"), ("final_answer", str(3 * i)),
                     ("status", "ok"), ("error", None), ("n_rollouts", b.lengths.shape[1]),
                     ("n_correct", n_correct), ("n_nodes", n_nodes), ("n_continuations", cont),
                     ("generated_tokens", n_tok + cont * 20), ("seconds", 0.001 * n_tok)):
            q_rows[c].append(v)
        for m in models:
            prompt = f"Q:synthetic question {i} A:" if m.kind != "self" else \
                f"Q:synthetic question {i} ={3 * i} A:"
            for c, v in (("question_id", qid), ("teacher", m.name), ("prompt", prompt),
                         ("n_prompt_tokens", len(prompt))):
                tp_rows[c].append(v)


def _failed_question(q_rows: dict, i: int, family: int) -> None:
    for c, v in (("question_id", f"q{i:05d}"), ("idx", i), ("family", FAMILIES[family]),
                 ("question", f"synthetic question {i}"), ("solution", None),
                 ("final_answer", str(3 * i)), ("status", "failed"),
                 ("error", "RuntimeError: synthetic failure (CUDA out of memory)"),
                 ("n_rollouts", 0), ("n_correct", 0), ("n_nodes", 0), ("n_continuations", 0),
                 ("generated_tokens", 0), ("seconds", 0.5)):
        q_rows[c].append(v)


STAGE_SHARES = {"sampling": 0.2, "verification": 0.1, "scoring": 0.3, "continuations": 0.35,
                "writing": 0.05}
"""Each finished question's seconds split over the stages (question_stages), in fixed shares."""


def _insert_stages(con: duckdb.DuckDBPyConnection) -> None:
    shares = ", ".join(f"('{stage}', {share})" for stage, share in STAGE_SHARES.items())
    con.execute(f"""INSERT INTO question_stages
                    SELECT question_id, stage, seconds * share
                    FROM questions, (VALUES {shares}) AS s(stage, share)
                    WHERE status = 'ok' ORDER BY question_id, stage""")


def _insert(con: duckdb.DuckDBPyConnection, table: str, batch: pa.Table) -> None:
    con.register("_fixture_batch", batch)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM _fixture_batch")
    finally:
        con.unregister("_fixture_batch")


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m synthetic_runs  (from tests/, repo on PYTHONPATH)",
        description="Write a synthetic, schema-valid run database for TUI tests and benchmarks.")
    ap.add_argument("out", type=Path, help="output .duckdb file (replaced if it exists)")
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--min-len", type=int, default=20)
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--long-rollouts", type=int, default=0)
    ap.add_argument("--long-len", type=int, default=32000)
    ap.add_argument("--teachers", default="strong,specialist,self_answer",
                    help="comma list; controls are added")
    ap.add_argument("--signals", default=",".join(schema.SIGNALS))
    ap.add_argument("--candidates", type=int, default=6)
    ap.add_argument("--probed-share", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=200, help="question-bootstrap draws")
    a = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        out = write_fixture_db(
            a.out, questions=a.questions, rollouts=a.rollouts, min_len=a.min_len,
            max_len=a.max_len, long_rollouts=a.long_rollouts, long_len=a.long_len,
            teachers=[t for t in a.teachers.split(",") if t],
            signals=[s for s in a.signals.split(",") if s], candidates=a.candidates,
            probed_share=a.probed_share, seed=a.seed, draws=a.draws)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    con = duckdb.connect(str(out), read_only=True)
    n_tok, n_nodes = con.execute(
        "SELECT (SELECT count(*) FROM tokens), (SELECT count(*) FROM nodes)").fetchone()
    con.close()
    print(f"wrote {out}: {n_tok:,} tokens, {n_nodes:,} probed nodes, "
          f"{out.stat().st_size / 2**20:.1f} MiB in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
