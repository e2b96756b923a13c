"""Parameter-space check: J^T g against autograd of the ideal objective with S held fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import cli, run_ok, table
from tiny_world import make_model, make_tokenizer, make_world

from engine.models.loading import LoadedModel
from engine.stages.param_check import ParamGroupError, cosines, pullback, select_parameters

torch.set_num_threads(1)


def _lm() -> LoadedModel:
    tok = make_tokenizer()
    model = make_model(tok, 3).double()
    model.requires_grad_(False)
    return LoadedModel("s", model, tok, len(tok), torch.device("cpu"))


@pytest.mark.parametrize("groups", [(), ("lm_head",), ("model.layers.1",)])
def test_pullback_of_g_is_the_gradient_of_the_ideal_objective(groups: tuple[str, ...]) -> None:
    lm = _lm()
    prefix = [5, 9, 14, 3, 22]
    cand = torch.tensor([4, 7, 30, 11])
    s = torch.tensor([0.9, 0.1, 0.5, 0.0], dtype=torch.float64)
    with torch.no_grad():
        p = torch.softmax(lm.model(torch.tensor([prefix])).logits[0, -1].double(), -1)
    m_s = p[cand].sum()
    v_hat = (p[cand] * s).sum() / m_s
    g = torch.zeros(lm.vocab_size, dtype=torch.float64)
    g[cand] = p[cand] * (s - v_hat)

    got = pullback(lm, prefix, {"g": g}, groups)["g"]

    params = select_parameters(lm.model, groups)
    for q in params:
        q.requires_grad_(True)
    pt = torch.softmax(lm.model(torch.tensor([prefix])).logits[0, -1].double(), -1)
    objective = (pt[cand] * s).sum() + (1 - pt[cand].sum()) * v_hat  # outside C valued at V_hat
    ref = torch.autograd.grad(objective, params)
    ref_flat = torch.cat([r.reshape(-1) for r in ref])
    for q in params:
        q.requires_grad_(False)
    assert got.shape == ref_flat.shape
    assert torch.allclose(got, ref_flat, atol=1e-10, rtol=1e-8)
    assert got.norm() > 0


def test_cosines_and_groups() -> None:
    a = torch.tensor([1.0, 0.0], dtype=torch.float64)
    orth = torch.tensor([0.0, 2.0], dtype=torch.float64)
    c = cosines(a, {"same": a * 3, "orth": orth, "zero": torch.zeros(2, dtype=torch.float64)})
    assert c["same"] == pytest.approx(1.0) and c["orth"] == pytest.approx(0.0)
    assert c["zero"] is None
    with pytest.raises(ParamGroupError, match="match nothing"):
        select_parameters(_lm().model, ["transformer.h"])


def test_run_stores_param_cos_on_a_sample_of_nodes(tmp_path: Path) -> None:
    cfg = make_world(tmp_path, questions=1, max_new=6, rollouts=2, n=4, verifier="has_seven")
    cfg.write_text(cfg.read_text()
                   + '\n[param_check]\nnodes = 2\ngroups = ["lm_head", "model.layers.1"]\n')
    db = run_ok(cfg)
    nodes_with = table(db, """SELECT count(DISTINCT (rollout, pos)), count(*),
                                     min(param_cos), max(param_cos)
                              FROM scores WHERE param_cos IS NOT NULL""")[0]
    assert 1 <= nodes_with[0] <= 2 * 2
    assert -1 - 1e-9 <= nodes_with[2] <= nodes_with[3] <= 1 + 1e-9
    _check_param_cos_by_autograd(tmp_path, db)


def _check_param_cos_by_autograd(root: Path, db: Path) -> None:
    """Recompute every stored reverse-KL param_cos independently: J^T g as the autograd gradient
    of sum_C p_a S_a + (1 - m_s) V_hat (S held fixed), J^T d as minus that of KL(p || q) with
    the teacher's q held fixed, both over the same parameter groups."""
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer()
    student = AutoModelForCausalLM.from_pretrained(root / "student").double().eval()
    teacher = AutoModelForCausalLM.from_pretrained(root / "teacher").double().eval()
    params = [student.lm_head.weight] + [
        p for n, p in student.named_parameters() if n.startswith("model.layers.1.")]
    prompt = {q: tok(pr, add_special_tokens=False)["input_ids"] for q, pr in table(
        db, "SELECT DISTINCT question_id, prompt FROM rollouts")}
    toks = {(q, r, t): i for q, r, t, i in table(
        db, "SELECT question_id, rollout, pos, token_id FROM tokens")}
    stored = table(db, """SELECT question_id, rollout, pos, teacher, param_cos FROM scores
                          WHERE param_cos IS NOT NULL AND signal = 'rkl'
                            AND teacher IN ('strong', 'self_answer')""")
    assert stored
    for q, r, t, name, want in stored:
        cands = table(db, f"""SELECT token_id, s / n FROM candidates WHERE question_id = '{q}'
                              AND rollout = {r} AND pos = {t} ORDER BY cand""")
        ids = torch.tensor([c for c, _ in cands])
        s_hat = torch.tensor([v for _, v in cands], dtype=torch.float64)
        prefix = prompt[q] + [toks[(q, r, i)] for i in range(t)]
        for p in params:
            p.requires_grad_(True)
        logp = torch.log_softmax(student(torch.tensor([prefix])).logits[0, -1], -1)
        p_c = logp.exp()[ids]
        v_hat = (p_c * s_hat).sum().detach() / p_c.sum().detach()
        ideal = torch.autograd.grad((p_c * s_hat).sum() + (1 - p_c.sum()) * v_hat, params,
                                    retain_graph=True)
        t_prefix = prefix if name == "strong" else tok(table(
            db, f"SELECT prompt FROM teacher_prompts WHERE question_id = '{q}' "
            f"AND teacher = '{name}'")[0][0], add_special_tokens=False)["input_ids"] + prefix[
            len(prompt[q]):]
        with torch.no_grad():
            model = teacher if name == "strong" else student
            logq = torch.log_softmax(model(torch.tensor([t_prefix])).logits[0, -1], -1)
        kl = (logp.exp() * (logp - logq)).sum()
        pull = torch.autograd.grad(-kl, params)
        for p in params:
            p.requires_grad_(False)
        a = torch.cat([x.reshape(-1) for x in ideal])
        b = torch.cat([x.reshape(-1) for x in pull])
        assert want == pytest.approx(float(a @ b / (a.norm() * b.norm())), abs=1e-5)


def test_bad_groups_fail_before_any_work(tmp_path: Path) -> None:
    cfg = make_world(tmp_path, questions=1)
    cfg.write_text(cfg.read_text() + '\n[param_check]\nnodes = 1\ngroups = ["nope"]\n')
    code, out = cli("run", str(cfg))
    assert code == 2 and "match nothing" in out
    assert not (tmp_path / "run" / "parts").exists()
