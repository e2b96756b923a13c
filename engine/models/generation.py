"""Student sampling: rollouts and batched targeted continuations from shared prefixes.

Every sequence draws its uniforms from its own key (engine.rng), one per response position, and
samples by inverse CDF, so a sequence's tokens do not depend on what else is in its batch except
through float noise in the logits. A prefix is run through the model once; its key/value cache is
then copied, left-padded, into every row that continues from it (candidates x N continuations of
all nodes of a rollout decode together). Each step runs the decoder trunk and reads its logits
through `LoadedModel.logits`, the function scoring uses, so decode and scoring see the same
float32 logits up to batching noise in the trunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from engine.maths import sampling_logprobs
from engine.models.loading import LoadedModel
from engine.rng import uniforms


@dataclass(frozen=True)
class Sampler:
    temperature: float
    top_p: float
    top_k: int

    def sample(self, logits: Tensor, keys: np.ndarray, steps: np.ndarray) -> Tensor:
        """Inverse-CDF draw per row from softmax(logits / T) restricted by top-k / top-p."""
        logp = sampling_logprobs(logits.float(), self.temperature, self.top_p, self.top_k)
        probs = logp.exp()
        cdf = probs.cumsum(-1)
        u = uniforms(keys, steps)
        u_t = torch.as_tensor(u, device=logits.device, dtype=cdf.dtype) * cdf[:, -1]
        idx = torch.searchsorted(cdf, u_t.unsqueeze(1)).squeeze(1)
        # searchsorted can land on a zero-probability tail slot when u ~ total: step back to the
        # last token with mass.
        idx = idx.clamp(max=logits.shape[-1] - 1)
        bad = probs.gather(1, idx.unsqueeze(1)).squeeze(1) <= 0
        if bad.any():
            last_pos = (probs > 0).float().cumsum(-1).argmax(-1)
            idx = torch.where(bad, last_pos, idx)
        return idx


def _cache_from_rows(layers: Sequence[tuple[Tensor, Tensor]], lengths: Tensor) -> tuple[
        list[tuple[Tensor, Tensor]], Tensor]:
    """Left-padded per-row copies of one sequence's cache truncated to each row's length.

    layers: per layer (keys, values) of shape (1, heads, L, dim). Returns per-layer (B, heads,
    maxP, dim) tensors and the (B, maxP) attention mask.
    """
    max_len = int(lengths.max())
    device = layers[0][0].device
    offs = torch.arange(max_len, device=device).unsqueeze(0) - (max_len - lengths).unsqueeze(1)
    valid = offs >= 0  # (B, maxP)
    src = offs.clamp(min=0)
    out = []
    for k, v in layers:
        kk = k[0][:, src]  # (heads, B, maxP, dim)
        vv = v[0][:, src]
        mask = valid.unsqueeze(0).unsqueeze(-1).to(kk.dtype)
        out.append(((kk * mask).transpose(0, 1).contiguous(),
                    (vv * mask).transpose(0, 1).contiguous()))
    return out, valid.long()


def _preallocated_layer_class() -> type:
    """A DynamicLayer that writes into a buffer sized for the whole decode.

    DynamicLayer grows by concatenation, copying the whole cache at every step (a third of the
    decode time on small models); here each step writes one slot and exposes a view.
    """
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def __init__(self, keys: Tensor, values: Tensor, capacity: int):
            super().__init__()
            b, h, n, d = keys.shape
            self._k = keys.new_zeros(b, h, capacity, d)
            self._v = values.new_zeros(b, h, capacity, values.shape[-1])
            self._k[:, :, :n] = keys
            self._v[:, :, :n] = values
            self._n = n
            self.device, self.is_initialized = keys.device, True
            self._views()

        def _views(self) -> None:
            self.keys = self._k[:, :, : self._n]
            self.values = self._v[:, :, : self._n]

        def update(self, key_states: Tensor, value_states: Tensor, *args: object,
                   **kwargs: object) -> tuple[Tensor, Tensor]:
            q = key_states.shape[-2]
            if self._n + q > self._k.shape[-2]:  # outgrown: fall back to growing
                self._k = torch.cat([self._k, torch.zeros_like(self._k)], dim=-2)
                self._v = torch.cat([self._v, torch.zeros_like(self._v)], dim=-2)
            self._k[:, :, self._n : self._n + q] = key_states
            self._v[:, :, self._n : self._n + q] = value_states
            self._n += q
            self._views()
            return self.keys, self.values

        def batch_select_indices(self, indices: Tensor) -> None:
            self._k, self._v = self._k[indices], self._v[indices]
            self._views()

    return PreallocatedLayer


@torch.no_grad()
def prefix_cache(lm: LoadedModel, ids: list[int]) -> list[tuple[Tensor, Tensor]]:
    """Key/value cache of one sequence (all its tokens), as per-layer tensors."""
    x = torch.tensor([ids], device=lm.device)
    out = lm.decoder(input_ids=x, use_cache=True)  # the trunk only: no logits are needed
    return [(layer.keys, layer.values) for layer in out.cache.layers]


@torch.no_grad()
def decode(
    lm: LoadedModel,
    sampler: Sampler,
    layers: Sequence[tuple[Tensor, Tensor]],
    prefix_lens: Sequence[int],
    first_tokens: Sequence[int],
    keys: np.ndarray,
    first_steps: Sequence[int],
    max_steps: Sequence[int],
    eos: Sequence[int],
) -> list[list[int]]:
    """Continue each row from its prefix: feed `first_tokens`, then sample until EOS or budget.

    Row i continues from the first prefix_lens[i] cached positions, is fed first_tokens[i] (the
    forced candidate, or the prompt's last token for rollouts), and samples at most max_steps[i]
    tokens; the uniform for its j-th sampled token is keyed by (keys[i], first_steps[i] + j).
    Returns the sampled tokens per row (EOS included when emitted).
    """
    from transformers import DynamicCache

    n = len(prefix_lens)
    dev = lm.device
    lengths = torch.tensor(prefix_lens, device=dev)
    rows, attn = _cache_from_rows(layers, lengths)
    cache = DynamicCache(ddp_cache_data=rows)
    layer_cls = _preallocated_layer_class()
    capacity = attn.shape[1] + int(max(max_steps, default=0)) + 1
    cache.layers = [layer_cls(layer.keys, layer.values, capacity) for layer in cache.layers]
    tokens = torch.tensor(first_tokens, device=dev)
    pos = lengths.clone()
    step = np.asarray(first_steps, dtype=np.int64)
    remaining = np.asarray(max_steps, dtype=np.int64)
    keys = np.asarray(keys, dtype=np.uint64)
    eos_np = np.asarray(list(eos), dtype=np.int64)
    out: list[list[int]] = [[] for _ in range(n)]
    alive = np.arange(n)  # original row index of each batch row
    running = remaining > 0  # rows still sampling; finished rows ride along until compaction
    emitted: list[tuple[np.ndarray, np.ndarray]] = []  # (original rows, their tokens) per step
    while running.any():
        if running.mean() < 0.75:  # compact: drop finished rows from the cache and the batch
            keep = np.nonzero(running)[0]
            idx = torch.as_tensor(keep, device=dev)
            cache.batch_select_indices(idx)
            attn, tokens, pos = attn[idx], tokens[idx], pos[idx]
            alive, keys, step, remaining, running = (alive[keep], keys[keep], step[keep],
                                                     remaining[keep], running[keep])
        attn = torch.cat([attn, torch.ones(len(alive), 1, dtype=attn.dtype, device=dev)], 1)
        # trunk, then the same float32 output layer scoring uses (LoadedModel.logits)
        hidden = lm.decoder(input_ids=tokens.unsqueeze(1), attention_mask=attn,
                            position_ids=pos.unsqueeze(1), cache=cache,
                            use_cache=True).last_hidden_state
        nxt = sampler.sample(lm.logits(hidden[:, -1]), keys, step)
        nxt_np = nxt.cpu().numpy()
        emitted.append((alive[running], nxt_np[running]))
        remaining = remaining - 1
        running = running & ~np.isin(nxt_np, eos_np) & (remaining > 0)
        step = step + 1
        pos = pos + 1
        tokens = nxt
    for rows_, toks in emitted:
        for r, a in zip(rows_.tolist(), toks.tolist(), strict=True):
            out[r].append(a)
    return out


def sample_rollouts(lm: LoadedModel, sampler: Sampler, prompt_ids: list[int], keys: np.ndarray,
                    max_new_tokens: int, eos: Sequence[int]) -> list[list[int]]:
    """G rollouts from one prompt: the prompt is run once and its cache shared by all rows."""
    layers = prefix_cache(lm, prompt_ids[:-1]) if len(prompt_ids) > 1 else None
    g = len(keys)
    if layers is None:
        raise ValueError("the rendered prompt must have at least two tokens")
    return decode(lm, sampler, layers, [len(prompt_ids) - 1] * g, [prompt_ids[-1]] * g, keys,
                  [0] * g, [max_new_tokens] * g, eos)
