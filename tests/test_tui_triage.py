"""The rollout view's triage aids on the demo: value curve, legend, one-line why, diff layer,
zoomed inspector, copied details, glossary, NO_COLOR categories; each checked against DuckDB."""

from __future__ import annotations

import io
import random
import re
from itertools import combinations
from pathlib import Path
from typing import Any

import duckdb
import pytest
from rich.color import ColorSystem
from rich.console import Console
from textual.filter import monochrome_style
from textual.pilot import Pilot
from tui_pilot import press, settle

from opd_tui.app import make_app
from opd_tui.glossary import GLOSSARY
from opd_tui.queries import LAYERS, NodeDetail, layers_query, node_detail
from opd_tui.render import categorical
from opd_tui.screens.modals import TextModal, help_body
from opd_tui.screens.rollout import RolloutScreen
from opd_tui.widgets.inspector import Inspector, node_renderable, why_line
from opd_tui.widgets.legend import legend
from opd_tui.widgets.token_view import TokenView
from opd_tui.widgets.value_curve import ValueCurve, bin_of, binned, glyph

DEMO = Path(__file__).resolve().parents[1] / "sample_data" / "demo.duckdb"
QID, ROLLOUT, POS = "q000", 0, 18
"""The misconception strikes here: the student writes 9 (S = 0/12) where 8 succeeds (11/12)."""


@pytest.fixture(autouse=True)
def instant_inspector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RolloutScreen, "INSPECTOR_DELAY", 0.001)


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(DEMO), read_only=True)


async def rollout_at(pilot: Pilot, pos: int = POS) -> RolloutScreen:
    await settle(pilot)
    pilot.app.open_token(QID, ROLLOUT, pos)  # type: ignore[attr-defined]
    await settle(pilot)
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, RolloutScreen)
    return screen


def plain(renderable: Any, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, no_color=True)
    console.print(renderable)
    return console.export_text(styles=False)


# -- value curve --------------------------------------------------------------------------------

def test_binned_curve_is_the_mean_of_each_bin_and_bin_of_inverts_it() -> None:
    rng = random.Random(3)
    for _ in range(300):
        n, width = rng.randint(1, 120), rng.randint(1, 90)
        values = [None if rng.random() < 0.3 else rng.random() for _ in range(n)]
        bins = min(width, n)
        members: list[list[int]] = [[] for _ in range(bins)]
        for i in range(n):  # brute force: token i belongs to the bin bin_of says
            members[bin_of(i, n, width)].append(i)
        assert all(members) and sum(map(len, members)) == n
        assert all(m == list(range(m[0], m[-1] + 1)) for m in members)  # contiguous, in order
        got = binned(values, width)
        for b, idx in enumerate(members):
            finite = [values[i] for i in idx if values[i] is not None]
            want = sum(finite) / len(finite) if finite else None  # type: ignore[arg-type]
            assert got[b] == pytest.approx(want) if want is not None else got[b] is None
    assert glyph(0.0) == "▁" and glyph(1.0) == "█" and glyph(None) == " "
    assert glyph(-0.2) == "▁" and glyph(1.7) == "█"


async def test_value_curve_shows_v_hat_and_s_of_the_sampled_token(
        con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute("""SELECT t.pos, n.v_hat, n.v_hat + n.value_change FROM tokens t
                          LEFT JOIN nodes n USING (question_id, rollout, pos)
                          WHERE question_id = ? AND rollout = ? ORDER BY t.pos""",
                       [QID, ROLLOUT]).fetchall()
    app = make_app(DEMO)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await rollout_at(pilot)
        curve = screen.query_one(ValueCurve)
        assert curve.display and not curve.has_class("hidden")
        assert curve.v_hat == [r[1] for r in rows]
        assert curve.s_sampled == pytest.approx([r[2] for r in rows])
        index = [r[0] for r in rows].index(POS)
        assert curve.cursor == index
        top, bottom = curve.rows(120)
        # the cursor's own values at the end; S(y) there is 0 while V̂ is ~0: no drop
        assert top.plain.endswith(f"V̂ {rows[index][1]:.2f}")
        assert f"S(y) {rows[index][2]:.2f}" in bottom.plain
        await press(pilot, "l")
        assert curve.cursor == index + 1
        await press(pilot, "w")
        assert not curve.display
    async with make_app(DEMO).run_test(size=(80, 24)) as pilot:  # 80x24 needs the rows
        screen = await rollout_at(pilot)
        assert not screen.query_one(ValueCurve).display


# -- why, diff layer, legend --------------------------------------------------------------------

def _detail(con: duckdb.DuckDBPyConnection, pos: int = POS) -> tuple[NodeDetail, list[str]]:
    teachers = [r[0] for r in con.execute(
        "SELECT teacher FROM teachers WHERE NOT is_control ORDER BY ordinal").fetchall()]
    return node_detail(con.cursor(), QID, ROLLOUT, pos, teachers), teachers


def test_why_line_names_the_outcomes_the_teachers_pick_and_the_verdict(
        con: duckdb.DuckDBPyConnection) -> None:
    detail, _ = _detail(con)
    cands = con.execute("""SELECT token_text, is_sampled, s, n, s_hat FROM candidates
                           WHERE question_id = ? AND rollout = ? AND pos = ?""",
                        [QID, ROLLOUT, POS]).fetchall()
    sampled = next(c for c in cands if c[1])
    alt = max((c for c in cands if not c[1] and c[4] is not None), key=lambda c: c[4])
    q = con.execute("""SELECT c.token_text, ct.q FROM candidate_teacher ct JOIN candidates c
                       USING (question_id, rollout, pos, cand) WHERE question_id = ?
                       AND rollout = ? AND pos = ? AND teacher = 'strong'
                       ORDER BY ct.q DESC LIMIT 1""", [QID, ROLLOUT, POS]).fetchone()
    edge, label = con.execute("""SELECT edge, label_edge FROM scores WHERE question_id = ?
                                 AND rollout = ? AND pos = ? AND teacher = 'strong'
                                 AND signal = 'rkl'""", [QID, ROLLOUT, POS]).fetchone()
    line = why_line(detail, "strong", "rkl", {"tau_stakes": 0.1})
    assert line is not None
    text = line.plain
    assert f"S({sampled[0]}) = {sampled[2]}/{sampled[3]}" in text
    assert f"vs S({alt[0]}) = {alt[2]}/{alt[3]}" in text
    assert sampled[2] == 0 and alt[2] >= 10  # the story this node tells
    assert f"strong puts {q[1]:.2f} on {q[0]}" in text
    assert re.search(r"edge [+-]?\.\d\d", text) and text.endswith(label)
    assert f"{edge:+.2f}".replace("0.", ".") in text
    # a node that is not decisive says so instead of a label
    pos = con.execute("""SELECT min(pos) FROM nodes n JOIN scores s USING (question_id, rollout,
                         pos) WHERE question_id = ? AND rollout = ? AND NOT decisive AND
                         s.teacher = 'strong' AND s.signal = 'rkl' AND s.edge IS NOT NULL""",
                      [QID, ROLLOUT]).fetchone()[0]
    if pos is not None:
        other = why_line(_detail(con, pos)[0], "strong", "rkl", {"tau_stakes": 0.1})
        assert other is not None and "not decisive" in other.plain


def test_diff_layer_is_the_edge_difference_with_the_better_label(
        con: duckdb.DuckDBPyConnection) -> None:
    frame = layers_query(QID, ROLLOUT, "strong", "rkl", "specialist").run(con.cursor())
    want = {pos: (a, b, la, lb) for pos, a, b, la, lb in con.execute("""
        SELECT s.pos, s.edge, o.edge, s.label_edge, o.label_edge FROM scores s
        JOIN scores o USING (question_id, rollout, pos, signal)
        WHERE s.question_id = ? AND s.rollout = ? AND s.signal = 'rkl'
          AND s.teacher = 'strong' AND o.teacher = 'specialist'""", [QID, ROLLOUT]).fetchall()}
    rank = {"helps": 1, "hurts": -1}
    seen_labels = 0
    for row in frame.iter_rows(named=True):
        a, b, la, lb = want[row["pos"]]
        if a is None or b is None:
            assert row["edge_diff"] is None
        else:
            assert row["edge_diff"] == pytest.approx(a - b)
        d = rank.get(la or "", 0) - rank.get(lb or "", 0)
        assert row["label_diff"] == ({1: "helps", -1: "hurts"}.get((d > 0) - (d < 0)))
        seen_labels += row["label_diff"] is not None
    assert seen_labels >= 1  # pos 18: the specialist helps where strong is neutral


def test_legend_spells_out_colours_and_attributes() -> None:
    by_id = {layer.id: layer for layer in LAYERS}
    edge = legend(by_id["edge"], ["strong", "specialist"]).plain
    assert "hurts" in edge and "helps" in edge and "±2" in edge
    assert "underlined: labelled" in edge and "bold helps" in edge and "italic hurts" in edge
    best = legend(by_id["best"], ["strong", "specialist", "self_answer"], mono=True)
    assert all(t in best.plain for t in ("strong", "specialist", "self_answer"))
    diff = legend(by_id["diff"], ["strong"], other="specialist").plain
    assert "vs specialist" in diff and "other better" in diff


def test_no_color_categories_stay_apart_on_a_256_colour_terminal() -> None:
    """NO_COLOR: the Okabe-Ito colours became four greys within 12 levels of each other; the
    mono palette keeps the first six teachers >= 30 levels apart after Textual's monochrome
    filter and the 256-colour quantisation tmux does."""
    def grey(i: int, mono: bool) -> int:
        style = monochrome_style(categorical(i, mono))  # type: ignore[arg-type]
        return style.bgcolor.downgrade(ColorSystem.EIGHT_BIT).get_truecolor()[0]

    def spread(mono: bool) -> int:
        return min(abs(grey(i, mono) - grey(j, mono)) for i, j in combinations(range(6), 2))

    assert spread(False) < 15 <= 30 <= spread(True)
    for i in range(6):  # readable text on every grey
        style = categorical(i, True)
        assert style is not None and (style.color.name == "black") == (grey(i, True) >= 128)


# -- inspector: width, zoom, copy ---------------------------------------------------------------

def test_candidate_table_splits_instead_of_cutting_cells(con: duckdb.DuckDBPyConnection) -> None:
    detail, teachers = _detail(con)
    narrow = plain(node_renderable(detail, teachers, False, width=78), 78)
    wide = plain(node_renderable(detail, teachers, False, width=200), 200)
    assert "each teacher's q of the candidates" in narrow
    assert "each teacher's q" not in wide
    s_lo_hi = con.execute("""SELECT s_hat, s_lo, s_hi FROM candidates WHERE question_id = ?
                             AND rollout = ? AND pos = ? AND is_sampled""",
                          [QID, ROLLOUT, POS]).fetchone()
    assert ".00[.000,.18]" in narrow and s_lo_hi[2] == pytest.approx(0.18, abs=0.005)
    assert ".…" not in narrow.split("edge = cos")[0]  # no candidate cell cut


async def test_zoomed_inspector_scrolls_while_arrows_still_step_tokens() -> None:
    app = make_app(DEMO)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await rollout_at(pilot)
        view, inspector = screen.query_one(TokenView), screen.query_one(Inspector)
        start = view.cursor
        await press(pilot, "z")
        assert screen.zoomed and not view.display
        assert inspector.size.height >= 15 and inspector.max_scroll_y > 0
        await press(pilot, "j", "j", "j")
        assert inspector.scroll_y == 3 and view.cursor == start
        await press(pilot, "l")
        assert view.cursor == start + 1
        await press(pilot, "z")
        assert not screen.zoomed and view.display


async def test_copy_token_details_copies_the_whole_inspector(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(DEMO)
    copied: list[str] = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test(size=(80, 24)) as pilot:
        await rollout_at(pilot)
        await press(pilot, "Y")
    assert len(copied) == 1
    text = copied[0]
    assert text.startswith(f"{QID} rollout {ROLLOUT} pos {POS}")
    assert "why: S(9) = 0/12 vs S(8) = 11/12" in text
    assert "self_solution" in text and "…" not in text.split("edge = cos")[0]


async def test_D_compares_with_the_next_teacher_on_the_diff_layer() -> None:
    app = make_app(DEMO)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await rollout_at(pilot)
        first = screen.other_teacher
        assert first == "specialist"  # the real teachers first, in their order
        await press(pilot, "D")
        assert screen.layer.id == "diff" and screen.other_teacher not in (first, "strong")
        assert f"vs {screen.other_teacher}" in str(screen.query_one("#title").render())
        assert screen.layer_frame["edge_diff"].drop_nulls().len() > 0


# -- glossary -----------------------------------------------------------------------------------

async def test_help_ends_with_a_glossary_of_every_abbreviation_on_screen() -> None:
    terms = " ".join(term for term, _ in GLOSSARY)
    for shown in ("∅%", "+/-/0 %", "m_s", "|C|", "|C+|", "V̂", "S(y)", "teachab.", "rank y",
                  "edge", "stakes", "inc / cor", "s/N"):
        assert shown in terms, shown
    text = plain(help_body("rollout", RolloutScreen.HELP), 200)
    assert "Glossary" in text and all(term in text for term, _ in GLOSSARY)
    app = make_app(DEMO)
    async with app.run_test(size=(100, 30)) as pilot:
        await rollout_at(pilot)
        await press(pilot, "question_mark")
        assert isinstance(app.screen, TextModal)
