"""Tiny Llama-architecture models and the prompt templates they are trained on.

They are ordinary transformers models (LlamaConfig, safetensors, generation_config) so the
engine loads them with AutoModelForCausalLM exactly as it loads a real student or teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from engine.toy.tokenizer import EOS_ID, PAD_ID, VOCAB, decode, encode, save_tokenizer

STUDENT_PROMPT = "Q:{question} A:"
ANSWER_PROMPT = "Q:{question} ={final_answer} A:"
SOLUTION_PROMPT = "Q:{question} S:{solution} A:"
"""Plain text templates (no chat template); the demo config uses the same strings."""

MAX_NEW_TOKENS = 64
MAX_POSITIONS = 192
"""Longest solution-context prompt (4-digit question + worked solution) is ~65 characters and the
longest response ~50, so 192 positions leave room for the engine's forced candidates."""


@dataclass(frozen=True)
class Arch:
    hidden: int
    layers: int
    heads: int
    ffn: int


def build_model(arch: Arch, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=arch.hidden,
        intermediate_size=arch.ffn,
        num_hidden_layers=arch.layers,
        num_attention_heads=arch.heads,
        num_key_value_heads=arch.heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=MAX_NEW_TOKENS,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    return model


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model: LlamaForCausalLM, out_dir: Path) -> None:
    """Weights (safetensors), config, generation_config and the shared tokenizer, in one folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    save_tokenizer(out_dir)


def left_pad(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [encode(p) for p in prompts]
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return input_ids, mask


@torch.no_grad()
def generate(
    model: LlamaForCausalLM,
    prompts: list[str],
    *,
    greedy: bool,
    seed: int = 0,
    batch_size: int = 256,
) -> list[str]:
    """Completions at T=1, top_k=0, top_p=1, passed explicitly (transformers defaults top_k=50)."""
    model.eval()
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        input_ids, mask = left_pad(prompts[start : start + batch_size])
        torch.manual_seed(seed + start)
        gen = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            do_sample=not greedy,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=MAX_NEW_TOKENS,
            eos_token_id=EOS_ID,
            pad_token_id=PAD_ID,
        )
        out.extend(decode(row.tolist()) for row in gen[:, input_ids.shape[1] :])
    return out


@torch.no_grad()
def next_token_probs(model: LlamaForCausalLM, texts: list[str]) -> torch.Tensor:
    """Probabilities of the token that follows each text (left-padded batch): (batch, vocab)."""
    model.eval()
    input_ids, mask = left_pad(texts)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
    return logits[:, -1].float().softmax(-1)
