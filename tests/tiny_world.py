"""A tiny offline world for engine tests: char tokenizer, random Llama models, questions, config.

Models are untrained (random weights) unless a test trains them: the engine's maths and plumbing
do not care whether the student is any good, and building this takes well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHARS = list("0123456789+-=#: QAabcdefghijklmnopqrstuvwxyz.,;()/")
SPECIALS = ["<pad>", "<eos>", "<unk>"]


def make_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


def make_model(tok: PreTrainedTokenizerFast, seed: int, hidden: int = 32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=256, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=None)
    model = LlamaForCausalLM(cfg)
    # bias the EOS logit up so random models stop after a handful of tokens
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] *= 0
        model.model.norm.weight.fill_(1.0)
    return model.eval()


def save(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, path: Path) -> Path:
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_questions(path: Path, n: int = 3) -> Path:
    rows = []
    for i in range(n):
        a, b = 3 + i, 4 + 2 * i
        rows.append({"id": f"q{i:03d}", "family": "add" if i % 2 == 0 else "sub",
                     "question": f"{a}+{b}", "solution": f"{a}+{b}={a + b} #### {a + b}",
                     "final_answer": str(a + b)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


CONFIG = """
output_dir = "run"
seed = 0

[student]
model = "student"
prompt = "Q:{{question}} A:"

[data]
path = "questions.jsonl"

[verifier]
kind = "numeric"

[sampling]
max_new_tokens = {max_new}
rollouts = {rollouts}

[candidates]
student_top_k = 2
teacher_top_k = 1

[continuations]
n = {n}

[nodes]
strategy = "{strategy}"

[bootstrap]
draws = 50

[[teachers]]
name = "strong"
kind = "external"
model = "teacher"
prompt = "Q:{{question}} A:"

[[teachers]]
name = "self_answer"
kind = "self"
prompt = "Q:{{question}} ={{final_answer}} A:"
"""


CONTEXTS = """
[derived]
few_shot = {few_shot}
few_shot_template = "Q:{{question}} S:{{solution}}"
contrastive_missing = "{missing}"

[[contexts]]
name = "summary"
model = "student"
prompt = "Summarise {{solution}}:"
temperature = 1.0
max_new_tokens = {summary_tokens}
seed = 3
{shots}
[[teachers]]
name = "self_contrast"
kind = "self"
prompt = "Right:{{contrastive_correct}} Wrong:{{contrastive_incorrect}} Q:{{question}} A:"

[[teachers]]
name = "self_summary"
kind = "self"
prompt = "{{summary}} Q:{{question}} A:"
"""

SHOTS_TEACHER = """
[[teachers]]
name = "self_shots"
kind = "self"
prompt = "{few_shot} Q:{question} A:"
"""


def make_world(root: Path, *, questions: int = 2, max_new: int = 8, rollouts: int = 2,
               n: int = 4, strategy: str = "all", verifier: str | None = None) -> Path:
    """Write student/teacher models, questions and config under root; returns the config path.

    `verifier` names a function of tests/tiny_verifiers.py to judge with (`use_verifier`); the
    default numeric verifier rarely says correct on untrained models."""
    tok = make_tokenizer()
    save(make_model(tok, 1), tok, root / "student")
    save(make_model(tok, 2, hidden=48), tok, root / "teacher")
    write_questions(root / "questions.jsonl", questions)
    cfg = root / "config.toml"
    cfg.write_text(CONFIG.format(max_new=max_new, rollouts=rollouts, n=n, strategy=strategy))
    return use_verifier(cfg, verifier) if verifier else cfg


def use_verifier(cfg: Path, name: str) -> Path:
    """Judge the world's rollouts with `tiny_verifiers:<name>` instead of the numeric verifier."""
    cfg.write_text(cfg.read_text().replace(
        'kind = "numeric"', f'kind = "callable"\ncallable = "tiny_verifiers:{name}"', 1))
    return cfg


def add_contexts(cfg: Path, *, missing: str = "solution", few_shot: int = 0,
                 summary_tokens: int = 6) -> Path:
    """Add the derived contexts to a world: a generated summary ([[contexts]]), contrastive
    rollouts and, with `few_shot`, worked examples, each read by a self teacher."""
    shots = SHOTS_TEACHER if few_shot else ""
    cfg.write_text(cfg.read_text() + CONTEXTS.format(
        missing=missing, few_shot=few_shot, summary_tokens=summary_tokens, shots=shots))
    return cfg


def bigram_model(tok: PreTrainedTokenizerFast, logit_table: torch.Tensor) -> LlamaForCausalLM:
    """A Llama whose next-token logits depend only on the previous token: logit_table[prev].

    Attention and MLP outputs are zeroed, so the residual stream is the previous token's
    one-hot embedding; RMSNorm scales it to sqrt(H), and the output layer reads the table.
    Hand-built distributions make exact expectations possible (position alignment, S = 0.3).
    """
    v = len(tok)
    h = ((v + 7) // 8) * 8
    cfg = LlamaConfig(vocab_size=v, hidden_size=h, intermediate_size=8, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                      tie_word_embeddings=False, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=None, rms_norm_eps=1e-12)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.model.embed_tokens.weight[:, :v] = torch.eye(v)
        model.model.norm.weight.fill_(1.0)
        model.model.layers[0].input_layernorm.weight.fill_(1.0)
        model.model.layers[0].post_attention_layernorm.weight.fill_(1.0)
        model.lm_head.weight[:, :v] = logit_table.T / h**0.5
    return model.eval()


def tid(tok: PreTrainedTokenizerFast, ch: str) -> int:
    return tok.convert_tokens_to_ids(ch)
