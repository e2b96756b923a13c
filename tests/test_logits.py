"""The engine's logits are the model's own: float32 head, post-head transforms, nucleus edge.

Scoring applies the output layer to trunk states itself (LoadedModel.logits) and decode uses the
same function, so (1) it must reproduce whatever a model's forward does after its head (Gemma's
softcap, Cohere's logit scale, Granite's logits scaling, ...), (2) it must not quantise logits in
bf16, and (3) a sampled token must never get log p_samp = -inf in scoring because float noise
put it just outside the nucleus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, LlamaForCausalLM
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

import engine.models.loading
from engine.inputs.config import CandidateConfig, SamplingConfig, SignalConfig
from engine.maths import sampling_logprobs
from engine.models.generation import Sampler, decode, prefix_cache
from engine.models.loading import (
    LoadedModel,
    ModelLoadError,
    ResidencyPool,
    check_logits,
    load_model,
)
from engine.stages.scoring import Scorer, Source, response_hidden
from tests.tiny_world import bigram_model, make_model, make_tokenizer

CPU = torch.device("cpu")
COMMON: dict[str, Any] = dict(vocab_size=64, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              head_dim=8, max_position_embeddings=128, tie_word_embeddings=False)
MOE = dict(num_local_experts=2, num_experts_per_tok=1)
SOFTCAP = dict(final_logit_softcapping=5.0)
# every causal-LM family transformers ships whose forward transforms logits after the head and
# that builds as a tiny random model here (see engine.models.loading.postprocess_logits)
FAMILIES: dict[str, dict[str, Any]] = {
    "gemma2": SOFTCAP,
    "gemma3_text": SOFTCAP,
    "gemma4_text": SOFTCAP,
    "vaultgemma": SOFTCAP,
    "nanochat": SOFTCAP,
    "cohere": dict(logit_scale=0.3),
    "cohere2": dict(logit_scale=0.3),
    "cohere2_moe": dict(logit_scale=0.3),
    "granite": dict(logits_scaling=4.0),
    "granite_swa": dict(logits_scaling=4.0),
    "granitemoe": dict(logits_scaling=4.0, **MOE),
    "granitemoe_swa": dict(logits_scaling=4.0),
    "granitemoeshared": dict(logits_scaling=4.0, shared_intermediate_size=32, **MOE),
    "granitemoehybrid": dict(logits_scaling=4.0, shared_intermediate_size=32, mamba_n_heads=8,
                             mamba_d_state=8, mamba_chunk_size=8,
                             layer_types=["attention", "attention"], **MOE),
    "hyperclovax": dict(logits_scaling=4.0),  # multiplies by it
    "minicpm3": dict(num_key_value_heads=4, head_dim=None, dim_model_base=8,  # h / 4
                     kv_lora_rank=8, q_lora_rank=16, qk_nope_head_dim=4, qk_rope_head_dim=4,
                     v_head_dim=8),
    "falcon_h1": dict(lm_head_multiplier=0.3),
}
PROBE = [4, 9, 17, 30, 5, 22, 41, 12]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    yield
    engine.models.loading.unload_all()


def tiny_family_model(model_type: str, tok: Any) -> Any:
    """A random tiny model of the family, its head scaled so raw logits reach |z| = 20."""
    if model_type not in CONFIG_MAPPING:
        pytest.skip(f"this transformers has no {model_type}")
    torch.manual_seed(0)
    kwargs = {**COMMON, **FAMILIES[model_type], "pad_token_id": tok.pad_token_id,
              "bos_token_id": None, "eos_token_id": tok.eos_token_id}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **kwargs)).eval()
    with torch.no_grad():
        ids = torch.tensor([PROBE])
        raw = model.get_output_embeddings()(model.get_decoder()(input_ids=ids).last_hidden_state)
        model.get_output_embeddings().weight.mul_(20.0 / float(raw.abs().max()))
    return model


def save_and_load(model: Any, tok: Any, path: Path) -> LoadedModel:
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return load_model(str(path), device=CPU, dtype=torch.float32)


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_logits_match_model_forward(model_type: str, tmp_path: Path) -> None:
    tok = make_tokenizer()
    lm = save_and_load(tiny_family_model(model_type, tok), tok, tmp_path / model_type)
    assert lm.vocab_size < lm.model.get_output_embeddings().weight.shape[0]  # padded head
    with torch.no_grad():
        ref = lm.model(input_ids=torch.tensor([PROBE])).logits[0, :, : lm.vocab_size]
        h = lm.hidden_states(PROBE)
        raw = lm.model.get_output_embeddings()(h)[:, : lm.vocab_size]
    ours = lm.logits(h)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape
    assert (ref - raw).abs().max() > 0.5  # the transform bites: skipping it would be caught
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_self_check_rejects_unknown_postprocessing(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tok = make_tokenizer()
    model = tiny_family_model("gemma2", tok)
    monkeypatch.setattr(engine.models.loading, "postprocess_logits", lambda config, z: z)
    with pytest.raises(ModelLoadError, match="post-processing is not supported"):
        save_and_load(model, tok, tmp_path / "gemma2")


class DoubledLlama(LlamaForCausalLM):
    """A model whose forward transforms logits in a way no config attribute announces."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 2
        return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_self_check_on_wrapped_models(dtype: torch.dtype) -> None:
    tok = make_tokenizer()
    plain = make_model(tok, 1).to(dtype)
    check_logits(LoadedModel("plain", plain, tok, len(tok), CPU))  # no false alarm
    doubled = DoubledLlama(plain.config).eval()
    doubled.load_state_dict(plain.state_dict())
    with pytest.raises(ModelLoadError, match="doubled.*not supported"):
        check_logits(LoadedModel("doubled", doubled.to(dtype), tok, len(tok), CPU))


def test_bf16_head_runs_in_float32() -> None:
    tok = make_tokenizer()
    model = make_model(tok, 1).to(torch.bfloat16)
    lm = LoadedModel("s", model, tok, len(tok), CPU)
    h = lm.hidden_states(PROBE)
    assert h.dtype == torch.bfloat16
    w = model.get_output_embeddings().weight
    expected = F.linear(h.float(), w.float())[:, : lm.vocab_size]
    ours = lm.logits(h)
    assert torch.equal(ours, expected)
    bf16_head = model.get_output_embeddings()(h).float()[:, : lm.vocab_size]
    assert (bf16_head - ours).abs().max() > 0  # what the old code returned
    with ResidencyPool(1).use(lm) as used:
        assert torch.equal(used.logits(h), expected)


def test_head_copy_is_made_once_and_stays() -> None:
    """The float32 head is cached per model and does not follow the parameters: model.to()
    rebinds parameter data, so offload() (model.to("cpu")) must leave the copy where it is."""
    tok = make_tokenizer()
    model = make_model(tok, 1)
    lm = LoadedModel("s", model, tok, len(tok), CPU)
    h = lm.hidden_states(PROBE)
    before = lm.logits(h)
    w32 = lm.head_fp32()[0]
    lm.offload()
    model.to(torch.float64)  # stands in for a device move: every parameter gets new storage
    assert model.get_output_embeddings().weight.dtype == torch.float64
    assert lm.head_fp32()[0] is w32 and w32.dtype == torch.float32
    assert torch.equal(lm.logits(h), before)


@dataclass(frozen=True)
class RecordingSampler(Sampler):
    """Records the logits decode samples from, with each batch row's key and step."""

    log: list[tuple[np.ndarray, np.ndarray, torch.Tensor]] = field(default_factory=list,
                                                                   compare=False)

    def sample(self, logits: torch.Tensor, keys: np.ndarray, steps: np.ndarray) -> torch.Tensor:
        self.log.append((np.array(keys), np.array(steps), logits.clone()))
        return super().sample(logits, keys, steps)


def test_decode_logits_equal_scoring_path(monkeypatch: pytest.MonkeyPatch) -> None:
    tok = make_tokenizer()
    lm = LoadedModel("s", make_model(tok, 3), tok, len(tok), CPU)

    def no_head(*args: Any) -> None:
        raise AssertionError("sampling must not run the model's own (low-precision) head")

    monkeypatch.setattr(lm.model.get_output_embeddings(), "forward", no_head)
    prefix = [tok.convert_tokens_to_ids(c) for c in "Q:3+4 A:7"]
    layers = prefix_cache(lm, prefix)  # the trunk only
    prefix_lens = [8, 6, 8, 4]
    first = [prefix[8], prefix[6], 12, 20]
    keys = np.array([11, 22, 33, 44], dtype=np.uint64)
    first_steps = [0, 3, 0, 1]
    sampler = RecordingSampler(1.0, 1.0, 0)
    out = decode(lm, sampler, layers, prefix_lens, first, keys, first_steps, [6, 3, 6, 2],
                 [tok.eos_token_id])
    row_of = {int(k): i for i, k in enumerate(keys)}
    checked, worst = 0, 0.0
    for ks, steps, z in sampler.log:
        for b, (k, s) in enumerate(zip(ks.tolist(), steps.tolist(), strict=True)):
            i = row_of[k]
            j = s - first_steps[i]
            if j >= len(out[i]):  # a finished row riding along
                continue
            seq = prefix[: prefix_lens[i]] + [first[i]] + out[i][:j]
            full = lm.logits(lm.hidden_states(seq)[-1])
            worst = max(worst, float((z[b] - full).abs().max()))
            checked += 1
    assert checked == sum(len(o) for o in out) and checked >= 8
    assert worst <= 1e-5, worst


def test_keep_forces_token_at_nucleus_edge() -> None:
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    z = p.log()
    top_p = 0.8 - 1e-9  # token 2 of row 0 sits just outside: mass before it is 0.8
    base = sampling_logprobs(z, 1.0, top_p, 0)
    assert torch.isinf(base[0, 2]) and base[0, 2] < 0
    # default unchanged: the nucleus renormalised by hand
    expected0 = torch.tensor([0.5 / 0.8, 0.3 / 0.8, 0, 0], dtype=torch.float64).log()
    expected1 = torch.tensor([0, 0.2 / 0.9, 0.3 / 0.9, 0.4 / 0.9], dtype=torch.float64).log()
    torch.testing.assert_close(base, torch.stack([expected0, expected1]))
    keep = torch.tensor([2, 3])  # row 1 keeps a token already in its nucleus
    forced = sampling_logprobs(z, 1.0, top_p, 0, keep=keep)
    assert math.isfinite(float(forced[0, 2]))
    torch.testing.assert_close(forced[0], torch.tensor([0.5, 0.3, 0.15, 0], dtype=torch.float64)
                               .div(0.95).log())
    assert torch.equal(forced[1], base[1])
    torch.testing.assert_close(forced.exp().sum(-1), torch.ones(2, dtype=torch.float64))
    # top-k too, and both filters together
    k_forced = sampling_logprobs(z, 1.0, 1.0, 1, keep=torch.tensor([3, 0]))
    assert torch.isfinite(k_forced[0, [0, 3]]).all() and torch.isinf(k_forced[0, [1, 2]]).all()
    assert torch.isfinite(k_forced[1, [0, 3]]).all()
    both = sampling_logprobs(z, 0.7, 0.5, 2, keep=torch.tensor([3, 1]))
    assert torch.isfinite(both.gather(1, torch.tensor([[3], [1]]))).all()
    torch.testing.assert_close(both.exp().sum(-1), torch.ones(2, dtype=torch.float64))


def test_scorer_sampled_token_outside_nucleus_is_finite() -> None:
    """A sampled token just outside scoring's nucleus keeps a finite log p_samp in both passes
    (before the fix: -inf in student_pass, p_samp = 0 in node_pass)."""
    tok = make_tokenizer()
    v = len(tok)
    a, b, c, d = (tok.convert_tokens_to_ids(ch) for ch in "abcd")
    table = torch.full((v, v), -30.0)
    table[:, [a, b, c, d]] = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    lm = LoadedModel("s", bigram_model(tok, table), tok, v, CPU)
    prompt, response = [a, a], [c, a, c]
    hidden = response_hidden(ResidencyPool(0), [Source(lm, prompt)], [response])[0]
    sampling = SamplingConfig(top_p=0.79)
    scorer = Scorer(lm, [Source(lm, prompt)], hidden, [], sampling, SignalConfig(),
                    CandidateConfig(), 2, response)
    sp = scorer.student_pass()
    assert np.isfinite(sp.logp_sampled).all()
    assert sp.logp_sampled[1] == pytest.approx(math.log(0.5 / 0.8), abs=1e-4)  # 'a' unchanged
    assert sp.logp_sampled[0] == pytest.approx(math.log(0.15 / 0.95), abs=1e-4)
    ns = scorer.node_pass(np.array([0, 2]), [[c, a], [c, b]])
    assert (ns.p_samp > 0).all()
