"""Real-model inputs end to end: a chat template with a thinking switch, and math-verify."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from engine_helpers import run_ok, table
from tiny_world import bigram_model, make_model, make_tokenizer, save, tid
from transformers import PreTrainedTokenizerFast

torch.set_num_threads(1)

CHAT = (
    "{%- for m in messages -%}<|{{ m['role'] }}|>{{ m['content'] }}\n{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>"
    "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
    "{%- endif -%}"
)
SPECIAL = ["<|system|>", "<|user|>", "<|assistant|>", "<think>", "</think>"]


def _chat_tokenizer() -> PreTrainedTokenizerFast:
    tok = make_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": SPECIAL})
    tok.chat_template = CHAT
    return tok


def test_chat_template_run_aligns_every_teacher(tmp_path: Path) -> None:
    tok = _chat_tokenizer()
    save(make_model(tok, 1), tok, tmp_path / "student")
    save(make_model(tok, 2, hidden=48), tok, tmp_path / "teacher")
    (tmp_path / "q.jsonl").write_text('{"id": "c1", "question": "2+3", "solution": "5", '
                                      '"final_answer": "5"}\n')
    (tmp_path / "config.toml").write_text("""
output_dir = "run"
[student]
model = "student"
prompt = "Q:{question}"
chat_template = true
system_prompt = "be brief"
chat_template_kwargs = { enable_thinking = false }
[data]
path = "q.jsonl"
[verifier]
kind = "numeric"
answer_after = "</think>"
[sampling]
max_new_tokens = 6
rollouts = 2
[continuations]
n = 2
[nodes]
strategy = "all"
[bootstrap]
draws = 20
[[teachers]]
name = "strong"
kind = "external"
model = "teacher"
prompt = "Q:{question}"
[[teachers]]
name = "self_solution"
kind = "self"
prompt = "Q:{question} S:{solution}"
""")
    db = run_ok(tmp_path / "config.toml")
    prompts = dict(table(db, "SELECT teacher, prompt FROM teacher_prompts"))
    assert prompts["strong"] == "<|system|>be brief<|user|>Q:2+3<|assistant|><think></think>"
    assert prompts["self_solution"].startswith("<|system|>be brief<|user|>Q:2+3 S:5")
    # completions lack "</think>" (it sits in the prompt), so the verifier says why
    details = {d for (d,) in table(db, "SELECT verifier_detail FROM rollouts")}
    assert all("</think>" in d for d in details), details
    # q of the self teacher equals a direct forward on its chat-rendered prompt + response
    from transformers import AutoModelForCausalLM

    student = AutoModelForCausalLM.from_pretrained(tmp_path / "student").eval()
    toks: dict[int, list[int]] = {}
    for r, _pos, tid_ in table(db, "SELECT rollout, pos, token_id FROM tokens ORDER BY ALL"):
        toks.setdefault(r, []).append(tid_)
    ids = tok(prompts["self_solution"], add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids("<|assistant|>") in ids  # special tokens kept whole
    n = 0
    for r, pos, a, q in table(db, """SELECT ct.rollout, ct.pos, c.token_id, ct.q
                                   FROM candidate_teacher ct JOIN candidates c
                                   USING (question_id, rollout, pos, cand)
                                   WHERE ct.teacher = 'self_solution'"""):
        with torch.no_grad():
            logits = student(torch.tensor([ids + toks[r]])).logits[0].double()
        assert abs(q - torch.softmax(logits[len(ids) - 1 + pos], -1)[a].item()) < 1e-5
        n += 1
    assert n > 5


def test_math_verify_run(tmp_path: Path) -> None:
    """Student writes 1/2 or 1/3 with equal odds; the reference is 0.5: math-verify decides."""
    tok = make_tokenizer()
    v = len(tok)
    big = torch.full((v, v), -40.0)
    big[:, tok.eos_token_id] = 0.0
    for prev, nxt in ((":", "1"), ("1", "/")):
        big[tid(tok, prev)] = -40.0
        big[tid(tok, prev), tid(tok, nxt)] = 0.0
    big[tid(tok, "/")] = -40.0
    big[tid(tok, "/"), tid(tok, "2")] = math.log(0.5)
    big[tid(tok, "/"), tid(tok, "3")] = math.log(0.5)
    save(bigram_model(tok, big), tok, tmp_path / "student")
    (tmp_path / "q.jsonl").write_text('{"problem": "half?", "solution": "1/2", "answer": "0.5", '
                                      '"unique_id": "m1", "subject": "Algebra"}\n')
    (tmp_path / "config.toml").write_text("""
output_dir = "run"
[student]
model = "student"
prompt = "Q:{question} A:"
[data]
path = "q.jsonl"
preset = "math500"
[verifier]
kind = "math_verify"
timeout_s = 20
[sampling]
max_new_tokens = 5
rollouts = 4
[continuations]
n = 4
[nodes]
strategy = "all"
[bootstrap]
draws = 20
[[teachers]]
name = "self_answer"
kind = "self"
prompt = "Q:{question} ={final_answer} A:"
""")
    db = run_ok(tmp_path / "config.toml")
    rows = table(db, "SELECT completion, correct FROM rollouts")
    assert {c for c, _ in rows} <= {"1/2", "1/3"}
    assert all(ok == (c == "1/2") for c, ok in rows)
    fam = table(db, "SELECT family FROM questions")[0][0]
    assert fam == "Algebra"
    s = {txt: (s_, n_) for txt, s_, n_ in table(
        db, "SELECT token_text, s, n FROM candidates WHERE pos = 2")}
    assert s["2"][0] == s["2"][1] and s["3"][0] == 0
