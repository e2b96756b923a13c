"""End to end on tiny local models: tables, SQL-recomputable scores, alignment, S, resume."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from engine_helpers import assert_same_question_tables, cli, run_ok, table
from tiny_world import bigram_model, make_tokenizer, make_world, save, tid

from engine.runfile import schema

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def signal_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small run whose verifier succeeds often enough for nodes to carry signal."""
    root = tmp_path_factory.mktemp("e2e")
    return run_ok(make_world(root, questions=2, max_new=6, rollouts=2, n=6, verifier="has_seven"))


def test_every_table_and_view_is_filled(signal_run: Path) -> None:
    con = schema.open_run(signal_run)
    schema.check_schema(con)
    optional = {"rollout_prompts", "contexts"}  # only with those contexts: test_contexts.py
    for t in schema.TABLES + schema.SUMMARY_TABLES:
        n = con.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]
        assert n > 0 or t.name in optional, t.name
    for v in schema.VIEWS:
        con.execute(f"SELECT * FROM {v} LIMIT 5").fetchall()
    n_null, n_all = con.execute(
        "SELECT count(*) FILTER (WHERE cos IS NULL), count(*) FROM scores").fetchone()
    assert 0 < n_null < n_all, "expected both scored and NULL nodes in the signal run"
    reasons = {r[0] for r in con.execute(
        "SELECT DISTINCT null_reason FROM scores WHERE cos IS NULL").fetchall()}
    assert reasons <= {"no_signal", "zero_direction"}
    # the sharpened-student control is pure sharpening under reverse KL at every scored node
    ctrl = con.execute("""SELECT count(*) FILTER (WHERE beyond IS NOT NULL),
                                 count(*) FILTER (WHERE null_reason = 'pure_sharpening')
                          FROM scores WHERE teacher = 'ctrl_sharpened' AND signal = 'rkl'
                            AND cos IS NOT NULL""").fetchone()
    assert ctrl[0] == 0 and ctrl[1] > 0


def test_scores_recomputed_from_stored_columns(signal_run: Path) -> None:
    """Independent numpy recomputation of g, cos, cos_c and beyond from the file alone."""
    con = duckdb.connect(str(signal_run), read_only=True)
    cand = con.execute("""SELECT question_id, rollout, pos, cand, p, s, n, g, h FROM candidates
                          ORDER BY ALL""").fetchall()
    nodes = {(q, r, t): (v, h2) for q, r, t, v, h2 in con.execute(
        "SELECT question_id, rollout, pos, v_hat, h_norm2 FROM nodes").fetchall()}
    ct = {(q, r, t, c, te): (d_rkl, d_fkl, d_jsd, d_s) for q, r, t, c, te, d_rkl, d_fkl, d_jsd,
          d_s in con.execute("""SELECT question_id, rollout, pos, cand, teacher, d_rkl, d_fkl,
                                       d_jsd, d_sampled FROM candidate_teacher""").fetchall()}
    by_node: dict[tuple, list] = defaultdict(list)
    for q, r, t, c, p, s, n, g, h in cand:
        by_node[(q, r, t)].append((c, p, s / n, g, h))
    # g from p and S
    for key, rows in by_node.items():
        p = np.array([x[1] for x in rows])
        s_hat = np.array([x[2] for x in rows])
        v = (p * s_hat).sum() / p.sum()
        g = p * (s_hat - v)
        if np.ptp(s_hat) == 0:
            g[:] = 0
        assert np.allclose(g, [x[3] for x in rows], atol=1e-12)
        assert math.isclose(v, nodes[key][0], rel_tol=1e-9, abs_tol=1e-12)
    checked = 0
    sig_col = {"rkl": 0, "fkl": 1, "jsd": 2, "sampled": 3}
    for q, r, t, te, sig, d2, hd, gain, cos, cos_c, beyond in con.execute(
            """SELECT question_id, rollout, pos, teacher, signal, d_norm2, hd, gain, cos, cos_c,
                      beyond FROM scores""").fetchall():
        rows = by_node[(q, r, t)]
        g = np.array([x[3] for x in rows])
        h = np.array([x[4] for x in rows])
        d = np.array([ct[(q, r, t, x[0], te)][sig_col[sig]] for x in rows])
        h2 = nodes[(q, r, t)][1]
        assert math.isclose(gain, float(g @ d), rel_tol=1e-9, abs_tol=1e-15)
        if cos is None:
            assert not g.any() or d2 == 0
            continue
        assert math.isclose(cos, g @ d / math.sqrt((g @ g) * d2), rel_tol=1e-7, abs_tol=1e-9)
        assert math.isclose(cos_c, g @ d / math.sqrt((g @ g) * (d @ d)), rel_tol=1e-7,
                            abs_tol=1e-9)
        if beyond is not None:
            gh = g @ h
            num = g @ d - gh * hd / h2
            den = math.sqrt((g @ g - gh * gh / h2) * (d2 - hd * hd / h2))
            assert math.isclose(beyond, num / den, rel_tol=1e-6, abs_tol=1e-7)
        checked += 1
    assert checked > 20


def _doc_sql() -> dict[str, str]:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text()
    return {name: sql for sql, name in re.findall(
        r"```sql\n(-- recompute: (\w+)\n.*?)```", doc, flags=re.S)}


def test_documented_edge_and_stakes_sql_reproduces_the_engine(signal_run: Path) -> None:
    """docs/schema.md's recompute blocks, run verbatim on a real run, give the engine's own edge,
    cos_sharp, residual shares, stakes, |C+| and decisive flags."""
    con = duckdb.connect(str(signal_run), read_only=True)
    sql = _doc_sql()
    worst = con.execute(f"""
        SELECT max(abs(r.edge - s.edge)), max(abs(r.cos_sharp - s.cos_sharp)),
               count(*) FILTER (s.edge IS NOT NULL), count(*) FILTER (s.teacher <> 'x')
        FROM ({sql['edge_from_scores']}) r JOIN scores s
        USING (question_id, rollout, pos, teacher, signal)""").fetchone()
    assert worst[2] > 20 and worst[0] < 1e-9 and worst[1] < 1e-9, worst
    worst = con.execute(f"""
        SELECT max(abs(r.g_residual_share - n.g_residual_share)),
               max(abs(r.d_residual_share - s.d_residual_share)), count(*)
        FROM ({sql['scores_from_norms']}) r JOIN scores s
        USING (question_id, rollout, pos, teacher, signal) JOIN nodes n
        USING (question_id, rollout, pos)""").fetchone()
    assert worst[2] > 20 and worst[0] < 1e-6 and worst[1] < 1e-6, worst
    rows = con.execute(f"""
        SELECT r.stakes, n.stakes, r.n_plausible, n.n_plausible, r.decisive, n.decisive
        FROM ({sql['stakes_from_candidates']}) r JOIN nodes n
        USING (question_id, rollout, pos) WHERE n.null_reason IS DISTINCT FROM 'unverifiable'
        """).fetchall()
    assert len(rows) > 10
    assert all(abs(a - b) < 1e-12 and k == j and d == e for a, b, k, j, d, e in rows)
    assert any(d for *_, d in rows), "the signal run should have decisive nodes"
    # the sharpened control's edge is 0 at every node, under every signal
    ctrl = con.execute("""SELECT count(*), max(abs(edge)) FROM scores
                          WHERE teacher = 'ctrl_sharpened' AND edge IS NOT NULL""").fetchone()
    assert ctrl[0] > 0 and ctrl[1] == 0


def test_teacher_positions_are_aligned(tmp_path: Path) -> None:
    """A bigram teacher (q at t depends only on y_{t-1}) and a self teacher (direct forward),
    each under a prompt of another length than the student's. (A teacher equal to the student
    is checked with its own trunk pass in test_engine_numbers.)"""
    root = tmp_path
    cfg = make_world(root, questions=2, max_new=7, rollouts=2, n=2)
    tok = make_tokenizer()
    table_ = torch.randn(len(tok), len(tok)) * 3
    save(bigram_model(tok, table_), tok, root / "bigram")
    text = cfg.read_text().replace('model = "teacher"\nprompt = "Q:{question} A:"',
                                   'model = "bigram"\nprompt = "Q:{question} think it over. A:"')
    assert "bigram" in text
    cfg.write_text(text)
    db = run_ok(cfg)
    rows = table(db, """SELECT ct.question_id, ct.rollout, ct.pos, c.token_id, ct.teacher, ct.q, c.p
                        FROM candidate_teacher ct JOIN candidates c USING (question_id, rollout,
                        pos, cand)""")
    toks = {(q, r, t): i for q, r, t, i in table(
        db, "SELECT question_id, rollout, pos, token_id FROM tokens")}
    prompts = {(q, te): p for q, te, p in table(
        db, "SELECT question_id, teacher, prompt FROM teacher_prompts")}
    q_b = torch.softmax(table_.double(), -1)
    from transformers import AutoModelForCausalLM

    student = AutoModelForCausalLM.from_pretrained(root / "student").eval()
    direct: dict[tuple, torch.Tensor] = {}
    n_bigram = n_self = 0
    for q, r, t, a, te, qv, _p in rows:
        if te == "strong":
            prev = toks[(q, r, t - 1)] if t > 0 else tid(tok, prompts[(q, te)][-1])
            assert abs(qv - q_b[prev, a].item()) < 1e-5
            n_bigram += 1
        elif te == "self_answer":
            key = (q, r)
            if key not in direct:
                resp = [toks[(q, r, i)] for i in range(7) if (q, r, i) in toks]
                ids = tok(prompts[(q, te)], add_special_tokens=False)["input_ids"]
                with torch.no_grad():
                    logits = student(torch.tensor([ids + resp])).logits[0].double()
                direct[key] = torch.softmax(logits[len(ids) - 1:], -1)
            assert abs(qv - direct[key][t, a].item()) < 1e-5
            n_self += 1
    assert n_bigram > 10 and n_self > 10
    # the prompts really differ in length: an off-by-one would have shifted q
    lens = dict(table(db, "SELECT teacher, max(n_prompt_tokens) FROM teacher_prompts GROUP BY 1"))
    student_len = table(db, "SELECT max(length(prompt)) FROM rollouts")[0][0]  # 1 char: 1 token
    assert lens["strong"] > student_len + 10 and lens["self_answer"] > student_len


def _s_world(root: Path, n: int) -> Path:
    """Student: after the prompt's ':' writes 'a'; after 'a' writes '1' (p = 0.3) or '2'
    (p = 0.7); then EOS. The answer is "a1", so S('a' at node 0) = 0.3 exactly."""
    tok = make_tokenizer()
    v = len(tok)
    big = torch.full((v, v), -40.0)
    big[:, tok.eos_token_id] = 0.0
    big[tid(tok, ":"), :] = -40.0
    big[tid(tok, ":"), tid(tok, "a")] = 0.0
    big[tid(tok, "a"), :] = -40.0
    big[tid(tok, "a"), tid(tok, "1")] = math.log(0.3)
    big[tid(tok, "a"), tid(tok, "2")] = math.log(0.7)
    save(bigram_model(tok, big), tok, root / "student")
    (root / "questions.jsonl").write_text(
        '{"id": "s", "question": "x", "solution": "a1", "final_answer": "a1"}\n')
    cfg = root / "config.toml"
    cfg.write_text(f"""
output_dir = "run"
[student]
model = "student"
prompt = "Q:{{question}} A:"
[data]
path = "questions.jsonl"
[verifier]
kind = "exact"
[sampling]
max_new_tokens = 4
rollouts = 1
[candidates]
student_top_k = 2
teacher_top_k = 1
[continuations]
n = {n}
[nodes]
strategy = "all"
[bootstrap]
draws = 50
[[teachers]]
name = "self_answer"
kind = "self"
prompt = "Q:{{question}} ={{final_answer}} A:"
""")
    return cfg


def test_success_probability_matches_the_model(tmp_path: Path) -> None:
    db = run_ok(_s_world(tmp_path, 2000))
    rows = table(db, """SELECT c.pos, t.token_text, c.s, c.n FROM candidates c
                        JOIN (SELECT DISTINCT token_id, token_text FROM candidates) t
                        USING (token_id) ORDER BY ALL""")
    by = {(pos, txt): (s, n) for pos, txt, s, n in rows}
    s, n = by[(0, "a")]
    assert n == 2000
    half = 3.29 * math.sqrt(0.3 * 0.7 / n)  # 99.9% binomial interval
    assert abs(s / n - 0.3) < half, s / n
    # forced candidates that decide the answer give exactly 1 and 0
    s1, n1 = by[(1, "1")]
    s2, n2 = by[(1, "2")]
    assert s1 == n1 and s2 == 0


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    a = make_world(tmp_path / "a", questions=3, max_new=6, rollouts=2, n=3)
    b = make_world(tmp_path / "b", questions=3, max_new=6, rollouts=2, n=3)
    db_a = run_ok(a)
    run_ok(b, "--limit", "1")  # "stopped" after the first question
    db_b = run_ok(b)
    # the two context tables are filled and resumed in test_contexts.py
    assert_same_question_tables(db_a, db_b, may_be_empty=("rollout_prompts", "contexts"))


def test_changed_config_refuses_the_directory_unless_fresh(tmp_path: Path) -> None:
    cfg = make_world(tmp_path, questions=1, max_new=4, rollouts=1, n=2)
    run_ok(cfg)
    cfg.write_text(cfg.read_text().replace("seed = 0", "seed = 1"))
    code, out = cli("run", str(cfg))
    assert code == 2 and "different config" in out and "--fresh" in out
    run_ok(cfg, "--fresh")


def test_failing_question_is_recorded_and_run_goes_on(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.run import orchestrate

    cfg = make_world(tmp_path, questions=3, max_new=4, rollouts=1, n=2)
    real = orchestrate.process_question

    def flaky(world, q, seeded=None):  # noqa: ANN001, ANN202
        if q.id == "q001":
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(world, q, seeded)

    monkeypatch.setattr(orchestrate, "process_question", flaky)
    db = run_ok(cfg)
    st = dict(table(db, "SELECT question_id, status FROM questions"))
    assert st == {"q000": "ok", "q001": "failed", "q002": "ok"}
    err = table(db, "SELECT error FROM failed_questions")[0][0]
    assert "out of memory" in err
    monkeypatch.setattr(orchestrate, "process_question", real)
    db = run_ok(cfg)  # resume retries the failed question only
    assert dict(table(db, "SELECT question_id, status FROM questions"))["q001"] == "ok"


def test_verifier_crash_marks_unverifiable(tmp_path: Path) -> None:
    db = run_ok(make_world(tmp_path, questions=1, max_new=4, rollouts=2, n=2, verifier="exploding"))
    verdicts = {v for (v,) in table(db, "SELECT verdict FROM rollouts")}
    assert verdicts == {"unverifiable"}


def test_edge_reference_without_the_sharpened_control(tmp_path: Path) -> None:
    """With ctrl_sharpened switched off the edge still has its reference: the student at the
    sharpened temperature, computed from its own logits (reverse KL: cos(g, h) exactly)."""
    cfg = make_world(tmp_path, questions=1, max_new=6, rollouts=2, n=6, verifier="has_seven")
    cfg.write_text(cfg.read_text() + "\n[controls]\nsharpened = false\n")
    con = duckdb.connect(str(run_ok(cfg)), read_only=True)
    assert con.execute("SELECT count(*) FROM teachers WHERE teacher = 'ctrl_sharpened'"
                       ).fetchone()[0] == 0
    worst, n, refs = con.execute("""
        SELECT max(abs(s.cos_sharp - n.gh / sqrt(n.g_norm2 * n.h_norm2))), count(*),
               count(DISTINCT s.signal) FILTER (s.cos_sharp IS NOT NULL)
        FROM scores s JOIN nodes n USING (question_id, rollout, pos)
        WHERE s.edge IS NOT NULL AND s.signal = 'rkl'""").fetchone()
    assert n > 0 and worst < 1e-9
    assert refs == 1
    other = con.execute("""SELECT count(*) FROM scores WHERE signal <> 'rkl'
                           AND cos IS NOT NULL AND cos_sharp IS NULL""").fetchone()[0]
    assert other == 0  # every signal has its reference
