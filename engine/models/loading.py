"""Model loading and the two forward passes the engine needs: trunk states and chunked logits.

Scoring reads full-vocabulary logits at every response position, which for a 150k vocabulary and
a 4k-token rollout is gigabytes. So we run the decoder trunk once (hidden states are small) and
apply the output layer to chunks of positions on demand, slicing away padded logit columns.

The output layer, and the post-processing some models apply after it, always runs in float32
here, and sampling (engine.models.generation) uses the same `LoadedModel.logits`: a bf16 head
quantises logits (steps of 0.125 near |z| = 30), which made decode and scoring disagree by ~3e-2
in log p.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


class ModelLoadError(Exception):
    """A model or tokenizer could not be loaded; the message names it and the fix."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available; "
                             "use device = 'auto' or 'cpu'")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


# Post-head transforms of transformers' causal LMs, keyed on the config attribute that drives
# them (found by grepping transformers 5.x modeling files for what follows the output layer).
# A scale divides or multiplies the logits; the order is scales first, then the softcap, as in
# MuseGlimmer/MuseSpark (the only models with both).
_SCALES: tuple[tuple[str, str], ...] = (
    ("logit_scale", "mul"),  # Cohere, Cohere2, Cohere2-MoE, CohereCompass
    ("lm_head_multiplier", "mul"),  # Falcon-H1
    ("output_multiplier", "mul"),  # MuseGlimmer, MuseSpark
    ("logits_scaling", "div"),  # Granite, GraniteMoe(-Shared/-Hybrid), MiniCPM3 (on h: same map)
    ("logits_mup_width_multiplier", "div"),  # Inkling (divides h: same map)
)
_SOFTCAPS = (
    "final_logit_softcapping",  # Gemma 2/3/3n/4, VaultGemma, NanoChat, MistralLarge4, Inkling2
    "logits_soft_cap",  # RecurrentGemma
    "output_logit_soft_cap",  # xLSTM
)
# Where one attribute name means something else: (model_type, attribute) -> rule (None: unused).
_OVERRIDES: dict[tuple[str, str], str | None] = {
    ("mpt", "logit_scale"): None,  # in MPT's config, ignored by transformers' MPT
    ("hyperclovax", "logits_scaling"): "mul",
}


def postprocess_logits(config: Any, z: Tensor) -> Tensor:
    """Apply the model's own post-head transform (softcap, logit scale) to output-layer logits.

    Scoring applies the output layer itself (to chunks of hidden states), so whatever the
    model's forward does after its head must be repeated here or every distribution is wrong.
    `load_model` checks the result against the model's own logits.
    """
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    model_type = getattr(cfg, "model_type", "")
    for attr, rule in _SCALES:
        value = getattr(cfg, attr, None)
        rule = _OVERRIDES.get((model_type, attr), rule)
        if value is None or rule is None or isinstance(value, str):
            continue
        z = z * value if rule == "mul" else z / value
    for attr in _SOFTCAPS:
        cap = getattr(cfg, attr, None)
        if cap is not None and _OVERRIDES.get((model_type, attr), "cap") is not None:
            z = torch.tanh(z / cap) * cap
    return z


@dataclass(eq=False)
class LoadedModel:
    """A causal LM with its tokenizer, plus the true vocabulary size (padding excluded)."""

    name: str
    model: Any
    tokenizer: Any
    vocab_size: int
    device: torch.device
    # float32 output layer (weight rows of the true vocabulary, bias) on `device`: it stays there
    # while the rest of the model is offloaded, so scoring never waits on a swap
    _head: tuple[Tensor, Tensor | None] | None = field(default=None, repr=False)

    @property
    def decoder(self) -> Any:
        """The trunk: the model without its output layer (returns last_hidden_state)."""
        return self.model.get_decoder()

    @torch.no_grad()
    def hidden_states(self, input_ids: list[int]) -> Tensor:
        """Final hidden states (L, H) of one sequence, output layer not applied."""
        ids = torch.tensor([input_ids], device=self.device)
        out = self.decoder(input_ids=ids, use_cache=False)
        return out.last_hidden_state[0]

    def head_fp32(self) -> tuple[Tensor, Tensor | None]:
        """The output layer's weight (true-vocabulary rows) and bias in float32 on the device,
        copied once per model: a bf16 head would quantise the logits."""
        if self._head is None:
            head = self.model.get_output_embeddings()
            w = head.weight.detach()[: self.vocab_size]
            b = getattr(head, "bias", None)
            # a float32 weight is not copied but viewed; model.to() rebinds the parameter's
            # data, not this view, so offload() leaves it on the device
            self._head = (w.to(self.device, torch.float32),
                          None if b is None else b.detach()[: self.vocab_size].to(
                              self.device, torch.float32))
        return self._head

    @torch.no_grad()
    def logits(self, hidden: Tensor) -> Tensor:
        """Output layer and the model's post-processing on hidden states (..., H), in float32,
        sliced to the true vocabulary. Sampling and scoring both read logits here."""
        w, b = self.head_fp32()
        z = F.linear(hidden.to(self.device, torch.float32), w, b)
        return postprocess_logits(self.model.config, z)

    @property
    def on_device(self) -> bool:
        return next(self.model.parameters()).device == self.device

    def offload(self) -> None:
        """Move the model to the CPU, keeping its float32 output layer on the device."""
        self.head_fp32()
        if self.device.type != "cpu":
            self.model.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def restore(self) -> None:
        self.model.to(self.device)


class ResidencyPool:
    """At most `limit` full models on the device at once (0 = no limit); least recently used
    models are offloaded. Output layers always stay, so scoring never waits on a swap."""

    def __init__(self, limit: int):
        self.limit = limit
        self.order: list[LoadedModel] = []
        self.swaps = 0

    @contextmanager
    def use(self, lm: LoadedModel) -> Iterator[LoadedModel]:
        if self.limit > 0:
            if lm in self.order:
                self.order.remove(lm)
            else:
                while len(self.order) >= self.limit:
                    self.order.pop(0).offload()
                    self.swaps += 1
                if not lm.on_device:
                    lm.restore()
            self.order.append(lm)
        yield lm


_CACHE: dict[tuple[str, str, str], LoadedModel] = {}

_PROBE_TEXT = "the quick brown fox jumps over the lazy dog"
LOW_PRECISION_TOLERANCE = 2.0**-6
"""Relative (Frobenius) error allowed between the engine's float32 logits and a bf16/fp16
model's own: rounding its head output and post-processing costs ~2^-9 per element, while each
transform in `postprocess_logits` changes logits by far more (Cohere's scale 1/16, Granite's
division by 8-16, a softcap wherever logits approach the cap)."""


def check_logits(lm: LoadedModel) -> None:
    """Compare `lm.logits(lm.hidden_states(ids))` with the model's own forward on 8 tokens.

    Scoring applies the output layer to trunk states itself; a model whose forward transforms
    logits in a way `postprocess_logits` does not know would be scored on the wrong
    distributions without any error. float32 models must agree to 1e-4 (relative to the largest
    logit, at least 1); bf16/fp16 models, whose own logits are rounded, within
    LOW_PRECISION_TOLERANCE in relative norm: a guard against unknown transforms, not a proof.
    """
    ids = lm.tokenizer.encode(_PROBE_TEXT, add_special_tokens=False)[:8]
    ids = [i for i in ids if 0 <= i < lm.vocab_size]
    ids += torch.linspace(0, lm.vocab_size - 1, 8 - len(ids)).long().tolist()
    with torch.no_grad():
        ours = lm.logits(lm.hidden_states(ids))
        x = torch.tensor([ids], device=lm.device)
        ref = lm.model(input_ids=x, use_cache=False).logits[0, :, : lm.vocab_size].float()
    if ours.shape != ref.shape:
        raise ModelLoadError(f"model {lm.name}: its output layer gives {ref.shape[-1]} logits "
                             f"for a tokenizer of {lm.vocab_size} tokens")
    diff = (ours - ref).abs()
    if lm.model.dtype == torch.float32:
        err, tol = float(diff.max()), 1e-4 * max(1.0, float(ref.abs().max()))
    else:
        err, tol = float(diff.norm() / ref.norm().clamp(min=1e-12)), LOW_PRECISION_TOLERANCE
    if not err <= tol:  # NaN fails too
        model_type = getattr(lm.model.config, "model_type", "?")
        raise ModelLoadError(
            f"model {lm.name} ({type(lm.model).__name__}, model_type {model_type!r}): its own "
            f"logits differ from output layer + known post-processing applied to its hidden "
            f"states (error {err:.3g} > {tol:.3g}); its logits post-processing is not supported "
            "(see engine.models.loading.postprocess_logits)")


def load_model(path: str, *, device: torch.device, dtype: torch.dtype,
               name: str | None = None, revision: str | None = None,
               trust_remote_code: bool = False) -> LoadedModel:
    """Load a model directory (or hub id at `revision`) once per process; eval mode, no grad.

    `trust_remote_code` lets transformers run the repository's own modelling code.
    """
    key = (path, str(device), str(dtype), revision, trust_remote_code)
    if key in _CACHE:
        return _CACHE[key]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        hub = {"revision": revision, "trust_remote_code": trust_remote_code}
        tok = AutoTokenizer.from_pretrained(path, **hub)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **hub)
    except Exception as e:  # transformers raises many types; report them as one user error
        where = "directory" if Path(path).exists() else "hub id (no hub access here?)"
        raise ModelLoadError(f"cannot load model {path!r} ({where}): {e}") from e
    model.to(device).eval()
    model.requires_grad_(False)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    loaded = LoadedModel(name or path, model, tok, len(tok), device)
    check_logits(loaded)
    _CACHE[key] = loaded
    return loaded


def unload_all() -> None:
    _CACHE.clear()


def eos_ids(loaded: LoadedModel) -> list[int]:
    """Every id that ends a response: the tokenizer's EOS plus the generation config's."""
    ids: set[int] = set()
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(int(loaded.tokenizer.eos_token_id))
    gen = getattr(loaded.model, "generation_config", None)
    gen_eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, list):
        ids.update(int(i) for i in gen_eos)
    if not ids:
        raise ModelLoadError(f"model {loaded.name} has no EOS token; set eos_token in its "
                             "tokenizer config")
    return sorted(ids)
