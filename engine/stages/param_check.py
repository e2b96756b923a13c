"""Parameter-space check (opt-in): do logit-space cosines survive the map to parameters?

A logit direction v at node u moves the parameters along J^T v with J = dz(u)/dtheta, which is
one backward pass of <v, z(u)>. Comparing cos(J^T g, J^T d) with the logit-space cos(g, d) tells
whether the network's geometry changes the verdict; restricting to named parameter groups keeps
this affordable for big models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor

from engine.models.loading import LoadedModel


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
