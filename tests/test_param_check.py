"""Parameter-space check: J^T g against autograd of the ideal objective with S held fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import cli, run_ok, table
from tiny_world import make_model, make_tokenizer, make_world

from engine.models import LoadedModel
from engine.param_check import ParamGroupError, cosines, pullback, select_parameters

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
    cfg = make_world(tmp_path, questions=1, max_new=6, rollouts=2, n=4)
    cfg.write_text(cfg.read_text().replace('kind = "numeric"', 'kind = "callable"\n'
                                           'callable = "tiny_verifiers:has_seven"')
                   + '\n[param_check]\nnodes = 2\ngroups = ["lm_head", "model.layers.1"]\n')
    db = run_ok(cfg)
    nodes_with = table(db, """SELECT count(DISTINCT (rollout, pos)), count(*),
                                     min(param_cos), max(param_cos)
                              FROM scores WHERE param_cos IS NOT NULL""")[0]
    assert 1 <= nodes_with[0] <= 2 * 2
    assert -1 - 1e-9 <= nodes_with[2] <= nodes_with[3] <= 1 + 1e-9


def test_bad_groups_fail_before_any_work(tmp_path: Path) -> None:
    cfg = make_world(tmp_path, questions=1)
    cfg.write_text(cfg.read_text() + '\n[param_check]\nnodes = 1\ngroups = ["nope"]\n')
    code, out = cli("run", str(cfg))
    assert code == 2 and "match nothing" in out
    assert not (tmp_path / "run" / "parts").exists()
