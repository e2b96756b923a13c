"""Parameter-space check (opt-in): do logit-space cosines survive the map to parameters?

A logit direction v at node u moves the parameters along J^T v with J = dz(u)/dtheta, which is
one backward pass of <v, z(u)>. Comparing cos(J^T g, J^T d) with the logit-space cos(g, d) tells
whether the network's geometry changes the verdict; restricting to named parameter groups keeps
this affordable for big models.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from engine import maths
from engine.models.loading import LoadedModel

if TYPE_CHECKING:
    from engine.stages.context import QuestionContext
    from engine.stages.node_scores import NodeScores
    from engine.stages.scoring import NodeStats, Scorer


class ParamGroupError(Exception):
    """The configured parameter groups match no parameter of the student."""


def select_parameters(model: torch.nn.Module, groups: Sequence[str]) -> list[torch.nn.Parameter]:
    """Parameters whose name starts with one of `groups` (all parameters when empty)."""
    named = list(model.named_parameters(remove_duplicate=False))  # tied lm_head is named too
    chosen = [p for n, p in named if not groups or any(
        n == g or n.startswith(g.rstrip(".") + ".") for g in groups)]
    if not chosen:
        sample = ", ".join(n for n, _ in named[:6])
        raise ParamGroupError(f"parameter groups {list(groups)} match nothing in the student; "
                              f"names look like: {sample}, ...")
    # tied weights appear once
    seen: set[int] = set()
    return [p for p in chosen if not (id(p) in seen or seen.add(id(p)))]


def _node_logits(lm: LoadedModel, input_ids: Sequence[int], params: list[torch.nn.Parameter]
                 ) -> Tensor:
    for p in params:
        p.requires_grad_(True)
    x = torch.tensor([list(input_ids)], device=lm.device)
    with torch.enable_grad():
        z = lm.model(input_ids=x, use_cache=False, logits_to_keep=1).logits[0, -1]
    z = z[: lm.vocab_size]
    return z.to(torch.promote_types(z.dtype, torch.float32))


def pullback(lm: LoadedModel, input_ids: Sequence[int], directions: Mapping[str, Tensor],
             groups: Sequence[str] = ()) -> dict[str, Tensor]:
    """J^T v for each logit direction v at the node whose prefix is `input_ids`, flattened."""
    params = select_parameters(lm.model, groups)
    try:
        z = _node_logits(lm, input_ids, params)
        out: dict[str, Tensor] = {}
        keys = list(directions)
        for i, k in enumerate(keys):
            v = directions[k].to(z.device, z.dtype)
            grads = torch.autograd.grad(z @ v, params, retain_graph=i < len(keys) - 1,
                                        allow_unused=True)
            out[k] = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).double()
                                for g, p in zip(grads, params, strict=True)])
        return out
    finally:
        for p in params:
            p.requires_grad_(False)


def cosines(ideal: Tensor, others: Mapping[str, Tensor]) -> dict[str, float | None]:
    """cos(J^T g, J^T d) per direction; None where either vector vanishes."""
    out: dict[str, float | None] = {}
    gn = ideal.norm()
    for k, v in others.items():
        vn = v.norm()
        out[k] = None if gn == 0 or vn == 0 else float(ideal @ v / (gn * vn))
    return out


def pick_nodes(g_norm2: Iterable[float], k: int) -> list[int]:
    """Indices of the k nodes with the largest |g| (most signal); nodes without signal never."""
    ranked = sorted(((v, i) for i, v in enumerate(g_norm2) if v > 0), reverse=True)
    return sorted(i for _, i in ranked[:k])


def param_cosines(ctx: QuestionContext, scorer: Scorer, response: list[int], stats: NodeStats,
                  scores: NodeScores) -> dict[tuple[int, int, int], float]:
    """cos(J^T g, J^T d) at the rollout's ``ctx.param_check.nodes`` highest-|g| nodes, for every
    teacher and signal: {(teacher index, signal index, node index): cos}."""
    student = ctx.student
    if student is None:
        raise ValueError("the parameter check needs the context's student model")
    families = ctx.signals.families
    out: dict[tuple[int, int, int], float] = {}
    for i in pick_nodes((scores.g**2).sum(-1).tolist(), ctx.param_check.nodes):
        pos = int(stats.positions[i])
        rows = torch.tensor([pos], device=student.device)
        _, logp_train = scorer.student_logps(rows)
        g_full = torch.zeros(student.vocab_size, dtype=torch.float64)
        real = stats.mask[i]
        g_full[torch.as_tensor(stats.cand_ids[i][real])] = torch.as_tensor(scores.g[i][real])
        directions = {"g": g_full}
        sampled = torch.tensor([response[pos]], device=student.device)
        for ti, view in enumerate(scorer.views):
            logq = scorer.teacher_logq(view, rows)
            for fi, family in enumerate(families):
                d = maths.direction(family, logp_train, logq, sampled, ctx.signals.jsd_beta)[0]
                directions[f"{ti}/{fi}"] = d.cpu()
        resident = ctx.pool.use(student) if ctx.pool else contextlib.nullcontext()
        with resident:
            pulled = pullback(student, ctx.prompt_ids + response[:pos], directions,
                              ctx.param_check.groups)
        ideal = pulled.pop("g")
        for key, cos in cosines(ideal, pulled).items():
            if cos is not None:
                ti, fi = (int(x) for x in key.split("/"))
                out[(ti, fi, i)] = cos
    return out
