"""Teacher scoring: every configuration's distribution on the student's own response tokens.

Each configuration sees its own prompt followed by exactly the student's response tokens; the
distribution for response token t is read at index len(prompt) + t - 1 of that sequence, whatever
the prompt's length. Full-vocabulary work runs on chunks of positions only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from engine import maths
from engine.inputs.config import (
    CONTROL_SHARPENED,
    CandidateConfig,
    SamplingConfig,
    SignalConfig,
    TeacherConfig,
)
from engine.models.loading import LoadedModel, ResidencyPool
from engine.stages.context import QuestionContext


@dataclass
class Source:
    """A (model, prompt) pair whose hidden states over the response are computed once."""

    lm: LoadedModel
    prompt_ids: list[int]
    rollout: int | None = None
    """The one rollout this prompt serves (contrastive contexts); None: every rollout."""


@dataclass
class TeacherView:
    """How one configuration reads its distribution: which source, at which temperature."""

    cfg: TeacherConfig
    source: int  # index into the list of sources
    temperature: float


@dataclass
class StudentPass:
    """Per-position student quantities over the whole response (pass 1)."""

    logp_sampled: np.ndarray  # (n,) log p_samp(y_t)
    entropy: np.ndarray  # (n,) H(p_train)
    student_top: np.ndarray  # (n, k_s) ids
    teacher_top: dict[str, np.ndarray]  # name -> (n, k_t) ids (non-control teachers)


@dataclass
class NodeStats:
    """Full-vocabulary quantities at the probed nodes (pass 2), aligned with the candidate lists.

    Arrays are (M, K) with K = max |C|, padded; mask marks real candidates.
    """

    positions: np.ndarray  # (M,)
    cand_ids: np.ndarray  # (M, K)
    mask: np.ndarray  # (M, K) bool
    p_samp: np.ndarray  # (M, K)
    h_cand: np.ndarray  # (M, K)
    h_norm2: np.ndarray  # (M,)
    q: dict[str, np.ndarray] = field(default_factory=dict)  # teacher -> (M, K)
    m_c: dict[str, np.ndarray] = field(default_factory=dict)  # teacher -> (M,)
    d_cand: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (teacher, sig)
    d_norm2: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    hd: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    # teacher -> proxy name -> (M,)
    proxies: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # the sharpened-student reference of the edge, per signal: d at the candidates and |d|^2
    # (the ctrl_sharpened control's own arrays when it is scored)
    ref_d_cand: dict[str, np.ndarray] = field(default_factory=dict)
    ref_d_norm2: dict[str, np.ndarray] = field(default_factory=dict)


CHUNK_ELEMENTS = 1 << 22
"""Cap on positions x vocabulary per full-vocabulary buffer (32 MB in float64)."""


def response_hidden(pool: ResidencyPool, sources: Sequence[Source],
                    responses: Sequence[list[int]]) -> list[list[Tensor]]:
    """Hidden states predicting each response token, per rollout and source.

    Index len(prompt) + t - 1 of (prompt + response) predicts response token t. Sources are
    visited model by model, so with a residency limit each model is brought in once.
    """
    out: list[list[Tensor]] = [[None] * len(sources) for _ in responses]  # type: ignore[list-item]
    by_model: dict[int, list[int]] = {}
    for i, src in enumerate(sources):
        by_model.setdefault(id(src.lm), []).append(i)
    for idxs in by_model.values():
        with pool.use(sources[idxs[0]].lm) as lm:
            for i in idxs:
                lp = len(sources[i].prompt_ids)
                for r, resp in enumerate(responses):
                    if not resp or sources[i].rollout not in (None, r):
                        continue
                    hs = lm.hidden_states(sources[i].prompt_ids + resp[:-1])
                    out[r][i] = hs[lp - 1 : lp - 1 + len(resp)]
    return out


class Scorer:
    """Computes the two passes for one rollout from each source's precomputed hidden states;
    only output layers are needed here, so teachers need not be resident."""

    def __init__(self, student: LoadedModel, sources: Sequence[Source], hidden: list[Tensor],
                 views: Sequence[TeacherView], sampling: SamplingConfig,
                 signals: SignalConfig, candidates: CandidateConfig, chunk: int,
                 response: list[int], sharpened_temperature: float = 0.5):
        self.student = student
        self.views = list(views)
        self.sampling = sampling
        self.signals = signals
        self.cands_cfg = candidates
        self.chunk = max(1, min(chunk, CHUNK_ELEMENTS // max(student.vocab_size, 1)))
        self.response = response
        self._response_t = torch.tensor(response, dtype=torch.long, device=student.device)
        self.n = len(response)
        self.hidden = hidden
        self.sources = list(sources)
        self.sharpened_temperature = sharpened_temperature
        self._sharpened = next((v for v in self.views if v.cfg.name == CONTROL_SHARPENED), None)

    @classmethod
    def for_rollout(cls, ctx: QuestionContext, sources: Sequence[Source], hidden: list[Tensor],
                    views: Sequence[TeacherView], response: list[int]) -> Scorer:
        """The scorer of one rollout of the context's question, with the context's settings."""
        if ctx.student is None:
            raise ValueError("scoring needs the context's student model")
        return cls(ctx.student, sources, hidden, views, ctx.sampling, ctx.signals,
                   ctx.candidates, ctx.score_chunk, response, ctx.sharpened_temperature)

    def student_logps(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(log p_samp, log p_train) at response positions `rows`.

        The sampled token is forced into the top-k / top-p set: decode kept it, and float noise
        between decode's and this pass's logits must not turn its log p_samp into -inf.
        """
        z = self.student.logits(self.hidden[0][rows])
        s = self.sampling
        sampled = self._response_t[rows.to(self._response_t.device)]
        logp_samp = maths.sampling_logprobs(z, s.temperature, s.top_p, s.top_k, keep=sampled)
        logp_train = torch.log_softmax(z.double(), -1) if self.signals.train_distribution == \
            "raw" else logp_samp
        return logp_samp, logp_train

    def teacher_logq(self, view: TeacherView, rows: Tensor) -> Tensor:
        """log q of one configuration at response positions `rows`, at its own temperature."""
        src = self.sources[view.source]
        z = src.lm.logits(self.hidden[view.source][rows])
        return torch.log_softmax(z.double() / view.temperature, -1)

    def student_pass(self) -> StudentPass:
        n, dev = self.n, self.student.device
        y = torch.tensor(self.response, device=dev)
        logp_y, ent, s_top = [], [], []
        t_top: dict[str, list[np.ndarray]] = {v.cfg.name: [] for v in self.views
                                              if not v.cfg.is_control}
        ks = max(self.cands_cfg.student_top_k, 1)
        kt = max(self.cands_cfg.teacher_top_k, 1)
        for start in range(0, n, self.chunk):
            rows = torch.arange(start, min(n, start + self.chunk), device=dev)
            logp_samp, logp_train = self.student_logps(rows)
            logp_y.append(logp_samp.gather(1, y[rows].unsqueeze(1)).squeeze(1).cpu().numpy())
            ent.append(maths.entropy(logp_train).cpu().numpy())
            s_top.append(logp_samp.topk(ks, -1).indices.cpu().numpy())
            for v in self.views:
                if not v.cfg.is_control:
                    t_top[v.cfg.name].append(
                        self.teacher_logq(v, rows).topk(kt, -1).indices.cpu().numpy())
        return StudentPass(
            np.concatenate(logp_y), np.concatenate(ent), np.concatenate(s_top),
            {k: np.concatenate(v) for k, v in t_top.items()},
        )

    def node_pass(self, positions: np.ndarray, cand_lists: Sequence[list[int]]) -> NodeStats:
        dev = self.student.device
        m = len(positions)
        k = max((len(c) for c in cand_lists), default=1)
        cand_ids = np.full((m, k), -1, dtype=np.int64)  # -1 pads (read as 0 by maths)
        for i, c in enumerate(cand_lists):
            cand_ids[i, : len(c)] = c
        mask = cand_ids >= 0
        y_all = torch.tensor(self.response, device=dev)
        # d = -dD/dz and h = -dH/dz in raw logits z, the coordinates of g: the closed forms are
        # gradients in the logits of p_train, which are z / T when p_train is p_samp
        unit = 1.0 if self.signals.train_distribution == "raw" else 1.0 / self.sampling.temperature
        out = NodeStats(positions, cand_ids, mask, np.zeros((m, k)), np.zeros((m, k)),
                        np.zeros(m))
        parts: dict[str, list[np.ndarray]] = {}

        def put(key: str, arr: Tensor | np.ndarray) -> None:
            parts.setdefault(key, []).append(arr.cpu().numpy() if isinstance(arr, Tensor)
                                             else arr)

        for start in range(0, m, self.chunk):
            sl = slice(start, min(m, start + self.chunk))
            rows = torch.as_tensor(positions[sl], device=dev)
            cidx = torch.as_tensor(cand_ids[sl], device=dev)
            cmask = torch.as_tensor(mask[sl], device=dev)
            safe = cidx.clamp(min=0)
            y = y_all[rows]
            logp_samp, logp_train = self.student_logps(rows)
            h, h_cand, h2 = maths.sharpening_stats(logp_train, cidx)
            put("p", logp_samp.exp().gather(1, safe) * cmask)
            put("h", h_cand * unit)
            put("h2", h2 * unit**2)
            for v in self.views:
                name = v.cfg.name
                logq = self.teacher_logq(v, rows)
                qc = logq.exp().gather(1, safe) * cmask
                put(f"q/{name}", qc)
                put(f"mc/{name}", qc.sum(-1))
                for sig in self.signals.families:
                    st = maths.direction_stats(sig, logp_train, logq, cidx, y,
                                               self.signals.jsd_beta, h=h)
                    put(f"d/{name}/{sig}", st.d_cand * cmask * unit)
                    put(f"dn/{name}/{sig}", st.d_norm2 * unit**2)
                    put(f"hd/{name}/{sig}", st.hd * unit**2)
                for pname, val in maths.proxies(logp_train, logq, y,
                                                max(self.cands_cfg.student_top_k, 1)).items():
                    put(f"x/{name}/{pname}", val)
            if self._sharpened is None:  # the edge's reference, computed as the control would be
                z = self.student.logits(self.hidden[0][rows])
                logq = torch.log_softmax(z.double() / self.sharpened_temperature, -1)
                for sig in self.signals.families:
                    st = maths.direction_stats(sig, logp_train, logq, cidx, y,
                                               self.signals.jsd_beta, h=h)
                    put(f"ref/{sig}", st.d_cand * cmask * unit)
                    put(f"refn/{sig}", st.d_norm2 * unit**2)
        cat = {key: np.concatenate(v) for key, v in parts.items()}
        out.p_samp, out.h_cand, out.h_norm2 = cat["p"], cat["h"], cat["h2"]
        for v in self.views:
            name = v.cfg.name
            out.q[name] = cat[f"q/{name}"]
            out.m_c[name] = cat[f"mc/{name}"]
            for sig in self.signals.families:
                out.d_cand[(name, sig)] = cat[f"d/{name}/{sig}"]
                out.d_norm2[(name, sig)] = cat[f"dn/{name}/{sig}"]
                out.hd[(name, sig)] = cat[f"hd/{name}/{sig}"]
            out.proxies[name] = {key.split("/")[2]: val for key, val in cat.items()
                                 if key.startswith(f"x/{name}/")}
        for sig in self.signals.families:
            if self._sharpened is not None:
                out.ref_d_cand[sig] = out.d_cand[(self._sharpened.cfg.name, sig)]
                out.ref_d_norm2[sig] = out.d_norm2[(self._sharpened.cfg.name, sig)]
            else:
                out.ref_d_cand[sig], out.ref_d_norm2[sig] = cat[f"ref/{sig}"], cat[f"refn/{sig}"]
        return out
