"""Numbers the engine stores, checked against independent computations on tiny local models:
sampling settings (T, top-p, top-k, train distribution), unverifiable verdicts, the batch plan,
the rank signal, the plausibility filter's sources and the invariants shared with the fixture."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from engine_helpers import run_ok, table
from run_invariants import violations
from synthetic_runs import write_fixture_db
from tiny_world import make_model, make_tokenizer, make_world, save, use_verifier

from engine import maths
from engine.runfile import schema
from engine.stages.nodes import CandidateSet, node_costs

torch.set_num_threads(1)

T, TOP_P, TOP_K = 0.7, 0.9, 6


@pytest.fixture(scope="module")
def sampling_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sampling")
    cfg = make_world(root, questions=2, max_new=6, rollouts=2, n=6)
    use_verifier(cfg, "even_length")
    cfg.write_text(cfg.read_text().replace(
        "rollouts = 2", f"rollouts = 2\ntemperature = {T}\ntop_p = {TOP_P}\ntop_k = {TOP_K}")
        + '\n[signals]\nfamilies = ["rkl", "fkl"]\ntrain_distribution = "sampling"\n')
    return run_ok(cfg)


def test_run_with_temperature_top_p_top_k_and_sampling_train_distribution(
        sampling_run: Path) -> None:
    """g = (1/T) p (S - V) from the stored counts; d_rkl equals autograd of KL(p_samp || q) in
    the raw logits (an independent forward of the whole sequence); no -inf log p."""
    root = sampling_run.parents[1]
    assert table(sampling_run, "SELECT count(*) FROM tokens WHERE NOT isfinite(logp)") == [(0,)]
    cand = table(sampling_run, """SELECT question_id, rollout, pos, cand, token_id, p, s, n, g
                                  FROM candidates ORDER BY ALL""")
    by_node: dict[tuple, list] = defaultdict(list)
    for q, r, t, c, a, p, s, n, g in cand:
        by_node[(q, r, t)].append((c, a, p, s / n, g))
    signal = 0
    for rows in by_node.values():
        p = np.array([x[2] for x in rows])
        s_hat = np.array([x[3] for x in rows])
        v = (p * s_hat).sum() / p.sum()
        g = np.zeros_like(p) if np.ptp(s_hat[p > 0]) == 0 else p * (s_hat - v) / T
        np.testing.assert_allclose([x[4] for x in rows], g, atol=1e-12)
        signal += bool(np.abs(g).max() > 0)
    assert signal > 3

    from transformers import AutoModelForCausalLM

    tok = make_tokenizer()
    student = AutoModelForCausalLM.from_pretrained(root / "student").eval()
    prompts = {(q, te): pr for q, te, pr in table(
        sampling_run, "SELECT question_id, teacher, prompt FROM teacher_prompts")}
    toks = {(q, r, t): i for q, r, t, i in table(
        sampling_run, "SELECT question_id, rollout, pos, token_id FROM tokens")}
    d_rkl = {(q, r, t, c): d for q, r, t, c, d in table(sampling_run, """
        SELECT question_id, rollout, pos, cand, d_rkl FROM candidate_teacher
        WHERE teacher = 'self_answer'""")}
    student_prompts = dict(table(sampling_run,
                                 "SELECT DISTINCT question_id, prompt FROM rollouts"))
    checked = 0
    for (q, r, t), rows in list(by_node.items())[:12]:
        resp = [toks[(q, r, i)] for i in range(t + 1)]
        ids_s = tok(student_prompts[q], add_special_tokens=False)["input_ids"]
        ids_t = tok(prompts[(q, "self_answer")], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            zq = student(torch.tensor([ids_t + resp[:t]])).logits[0, -1].double()
            z = student(torch.tensor([ids_s + resp[:t]])).logits[0, -1].double()
        z.requires_grad_(True)
        logp_samp = maths.sampling_logprobs(z.detach()[None], T, TOP_P, TOP_K)[0]
        kept = torch.isfinite(logp_samp)
        kept[resp[t]] = True
        logp = torch.log_softmax(z[kept] / T, -1)
        logq = torch.log_softmax(zq, -1)[kept]
        kl = (logp.exp() * (logp - logq)).sum()
        (grad,) = torch.autograd.grad(kl, z)
        for c, a, *_ in rows:
            assert d_rkl[(q, r, t, c)] == pytest.approx(-grad[a].item(), abs=1e-6)
            checked += 1
    assert checked > 10


def test_documented_g_sql_holds_at_temperature_below_one(sampling_run: Path) -> None:
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text()
    sql = re.search(r"```sql\n(-- recompute: g_from_candidates\n.*?)```", doc, re.S).group(1)
    con = duckdb.connect(str(sampling_run), read_only=True)
    worst, n = con.execute(f"""SELECT max(abs(r.g - c.g)), count(*) FROM ({sql}) r
        JOIN candidates c USING (question_id, rollout, pos, cand)
        JOIN nodes n USING (question_id, rollout, pos) WHERE n.null_reason IS NULL""").fetchone()
    assert n > 10 and worst < 1e-12


def test_unverifiable_continuations_are_not_failures(tmp_path: Path) -> None:
    """A verifier that cannot judge some completions: those are out of n and counted apart;
    a candidate with nothing judged makes its node NULL (reason unverifiable)."""
    cfg = make_world(tmp_path, questions=2, max_new=6, rollouts=2, n=6)
    use_verifier(cfg, "flaky_seven")
    db = run_ok(cfg)
    rows = table(db, "SELECT n, n_unverifiable, deterministic FROM candidates")
    assert all(n + u == (1 if det else 6) for n, u, det in rows)
    assert sum(u for _, u, _ in rows) > 0 and sum(n for n, _, _ in rows) > 0
    bad = table(db, """SELECT count(*) FROM nodes n WHERE (null_reason = 'unverifiable')
                       <> EXISTS (SELECT 1 FROM candidates c WHERE c.n = 0 AND
                                  (c.question_id, c.rollout, c.pos) = (n.question_id,
                                   n.rollout, n.pos))""")
    assert bad == [(0,)]
    assert table(db, """SELECT count(*) FROM scores s JOIN nodes n USING (question_id,
                        rollout, pos) WHERE n.null_reason = 'unverifiable' AND
                        (s.gain IS NOT NULL OR s.cos IS NOT NULL OR s.label IS NOT NULL
                         OR s.null_reason <> 'unverifiable')""") == [(0,)]
    con = duckdb.connect(str(db), read_only=True)
    assert violations(con) == {}


def test_verifier_that_never_judges_leaves_every_node_unverifiable(tmp_path: Path) -> None:
    cfg = make_world(tmp_path, questions=1, max_new=4, rollouts=2, n=2)
    use_verifier(cfg, "exploding")
    db = run_ok(cfg)
    assert table(db, "SELECT DISTINCT null_reason FROM nodes") == [("unverifiable",)]
    assert table(db, "SELECT sum(n), count(label), count(gain) FROM candidates, scores"
                 ) == [(0, 0, 0)]


def test_batch_plan_changes_rows_only_within_tolerance(tmp_path: Path) -> None:
    """Another continuations batch_size: every key and token id is the same, S counts differ
    only where float noise flips a sampled token, floats agree within 1e-9. Measured on this
    CPU: 0 of 56 candidates here changed S, and 0 of 1,607 on 3 demo questions with batch 4096
    vs 37 (every float bit-equal there); a GPU's batched kernels are where flips would appear,
    so the bound allows 2%."""
    dbs = []
    for bs in (4096, 5):
        cfg = make_world(tmp_path / str(bs), questions=2, max_new=6, rollouts=2, n=6)
        use_verifier(cfg, "has_seven")
        cfg.write_text(cfg.read_text().replace("n = 6", f"n = 6\nbatch_size = {bs}"))
        dbs.append(run_ok(cfg))
    key = "question_id, rollout, pos, cand"
    a, b = (table(db, f"SELECT {key}, token_id, s, n, p, g FROM candidates ORDER BY {key}")
            for db in dbs)
    assert [r[:5] for r in a] == [r[:5] for r in b]
    flips = sum(ra[5] != rb[5] for ra, rb in zip(a, b, strict=True))
    assert flips <= 0.02 * len(a), f"{flips} of {len(a)} candidates changed S"
    same_s = [(ra, rb) for ra, rb in zip(a, b, strict=True) if ra[5] == rb[5]]
    np.testing.assert_allclose([r[7] for r, _ in same_s], [r[7] for _, r in same_s], atol=1e-9)
    assert table(dbs[0], "SELECT token_id FROM tokens ORDER BY ALL") == \
        table(dbs[1], "SELECT token_id FROM tokens ORDER BY ALL")


def test_rank_signal_is_recorded_and_used_when_rkl_is_off(tmp_path: Path) -> None:
    cfg = make_world(tmp_path, questions=2, max_new=6, rollouts=2, n=4)
    use_verifier(cfg, "has_seven")
    cfg.write_text(cfg.read_text() + '\n[signals]\nfamilies = ["fkl", "sampled"]\n')
    db = run_ok(cfg)
    con = schema.open_run(db)
    assert schema.read_meta(con)["rank_signal"] == "fkl"
    assert con.execute("SELECT count(*) FROM summary_best").fetchone()[0] > 0
    assert con.execute("SELECT count(*) FROM summary_position").fetchone()[0] > 0
    # the best teacher per node is the fkl edge leader (point score, non-control) wherever
    # there is a confident one; every node with signal says why it has none otherwise
    rows = con.execute("""SELECT n.best_teacher, n.best_reason, arg_max(s.teacher, s.edge)
                          FROM nodes n JOIN scores s USING (question_id, rollout, pos)
                          JOIN teachers t USING (teacher)
                          WHERE s.signal = 'fkl' AND NOT t.is_control AND s.edge IS NOT NULL
                          GROUP BY n.question_id, n.rollout, n.pos, n.best_teacher,
                                   n.best_reason""").fetchall()
    assert rows
    assert all(best == leader for best, _, leader in rows if best is not None)
    assert all(reason in ("not_decisive", "tie") for best, reason, _ in rows if best is None)


def test_plausibility_filter_reads_sources_as_a_list(tmp_path: Path) -> None:
    """A teacher named student_big must not make its candidates 'student' candidates."""
    cfg = make_world(tmp_path, questions=2, max_new=6, rollouts=1, n=2)
    cfg.write_text(cfg.read_text().replace('name = "strong"', 'name = "student_big"')
                   .replace("student_top_k = 2", "student_top_k = 1")
                   .replace("teacher_top_k = 1", "teacher_top_k = 3\nplausibility = 1e-9"))
    db = run_ok(cfg)
    per_node = table(db, """SELECT count(*) FILTER (list_contains(string_split(sources, ','),
                                                                'student'))
                            FROM candidates GROUP BY question_id, rollout, pos""")
    assert per_node and max(k for (k,) in per_node) <= 1


def test_deterministic_candidates_cost_one_token_in_the_budget() -> None:
    cands = [CandidateSet([5, 1], ["sampled", "student"]), CandidateSet([1, 6], ["sampled", "x"])]
    # eos = 1; node 1 is the last position of a 2-token budget: every candidate is certain
    cost = node_costs(cands, n_cont=12, eos={1}, max_new_tokens=2)
    assert cost.tolist() == [12 * 2 + 1, 1 + 1]


def test_fixture_and_engine_satisfy_the_same_invariants(tmp_path: Path) -> None:
    fixture = write_fixture_db(tmp_path / "fx.duckdb", questions=6, rollouts=2, min_len=8,
                               max_len=20, draws=50, seed=3)
    con = duckdb.connect(str(fixture), read_only=True)
    assert violations(con) == {}
    con.close()
    cfg = make_world(tmp_path / "e", questions=2, max_new=6, rollouts=2, n=4)
    use_verifier(cfg, "has_seven")
    con = duckdb.connect(str(run_ok(cfg)), read_only=True)
    assert violations(con) == {}
    assert con.execute("SELECT count(*) FROM scores WHERE cos IS NULL").fetchone()[0] > 0


def test_separate_copy_of_the_student_scores_exactly_like_the_student(tmp_path: Path) -> None:
    """Teacher = the student's weights loaded from another directory, same prompt: its q is
    computed by its own trunk pass, and must equal p at every candidate."""
    cfg = make_world(tmp_path, questions=2, max_new=6, rollouts=2, n=2)
    tok = make_tokenizer()
    save(make_model(tok, 1), tok, tmp_path / "student_copy")
    cfg.write_text(cfg.read_text() + '\n[[teachers]]\nname = "copy"\nkind = "external"\n'
                   'model = "student_copy"\nprompt = "Q:{question} A:"\n')
    db = run_ok(cfg)
    rows = table(db, """SELECT ct.q, c.p FROM candidate_teacher ct JOIN candidates c
                        USING (question_id, rollout, pos, cand) WHERE ct.teacher = 'copy'""")
    assert len(rows) > 10 and max(abs(q - p) for q, p in rows) < 1e-6


def test_a_verifier_that_never_judges_is_flagged_loudly(tmp_path: Path) -> None:
    from engine_helpers import cli

    cfg = make_world(tmp_path, questions=1, max_new=4, rollouts=2, n=2)
    use_verifier(cfg, "exploding")
    code, out = cli("run", str(cfg))
    assert code == 0, out
    flat = " ".join(out.split())
    assert "100% of rollouts (2 of 2) are unverifiable" in flat
    assert "of continuations" in flat and "are unverifiable" in flat
    code, out = cli("info", str(tmp_path / "run" / "run.duckdb"))
    assert code == 0 and "are unverifiable" in " ".join(out.split())
