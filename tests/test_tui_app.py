"""Pilot tests: drive each screen with keys and assert on state (tiny hand-checkable run)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import tui_tiny_db
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Input
from tui_pilot import press, settle

from opd_tui import actions
from opd_tui.app import OpdApp, make_app
from opd_tui.cli import main, resolve_path
from opd_tui.queries import LAYERS, Run
from opd_tui.screens.modals import TextModal
from opd_tui.screens.overview import OverviewScreen
from opd_tui.screens.questions import QuestionsScreen
from opd_tui.screens.rollout import RolloutScreen
from opd_tui.screens.rollouts import RolloutsScreen
from opd_tui.widgets.token_view import TokenView

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def instant_inspector(monkeypatch: pytest.MonkeyPatch) -> None:
    """No debounce in tests: the inspector query starts as soon as the cursor moves."""
    monkeypatch.setattr(RolloutScreen, "INSPECTOR_DELAY", 0.001)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tui_tiny_db.build(tmp_path_factory.mktemp("tui") / "tiny.duckdb")


EPSILON = 0.05
TAU = 0.1


def _decisive(qi: int, pos: int) -> bool:
    """From the generator's successes: max - min S over C+ (at pos 2 C+ is the sampled token)."""
    s0, s1 = tui_tiny_db.successes(qi, pos)
    stakes = 0.0 if pos == tui_tiny_db.IMPLAUSIBLE_POS else abs(s0 - s1) / tui_tiny_db.N_CONT
    return stakes >= TAU


def expected_labels(qi: int, rollout: int, teacher_index: int, signal: str = "rkl",
                    score: str = "edge") -> dict[int, str]:
    """Independent recomputation of the helps/hurts labels from the generator's cosines:
    decisive node, interval (point -+ 0.2; beyond -+ 0.1) beyond +-epsilon."""
    factor = 1.0 if signal == "rkl" else 0.5
    out: dict[int, str] = {}
    for pos in range(0, tui_tiny_db.N_TOKENS, 2):
        if pos == tui_tiny_db.NO_SIGNAL_POS or not _decisive(qi, pos):
            continue
        cos = tui_tiny_db.cos_value(qi, rollout, pos, teacher_index) * factor
        if score == "edge":
            if teacher_index == tui_tiny_db.SHARPENED:
                continue  # the reference: edge 0 with interval [0, 0]
            value, half = cos - tui_tiny_db.cos_value(qi, rollout, pos, 2) * factor, 0.2
        elif score == "cos":
            value, half = cos, 0.2
        else:  # beyond: cos / 2, NULL where either residual share is below rho
            if (teacher_index == tui_tiny_db.SHARPENED or pos == tui_tiny_db.G_DOMINATED_POS
                    or tui_tiny_db.d_residual_share(pos, teacher_index) < 0.05):
                continue
            value, half = cos / 2, 0.1
        if value - half > EPSILON:
            out[pos] = "helps"
        elif value + half < -EPSILON:
            out[pos] = "hurts"
    return out


def expected_significant(qi: int, rollout: int, teacher_index: int, signal: str = "rkl",
                         score: str = "edge") -> list[int]:
    return sorted(expected_labels(qi, rollout, teacher_index, signal, score))


async def open_rollout(pilot: Pilot) -> RolloutScreen:
    """Overview -> Questions -> the question's rollouts -> rollout 0, cursor on token 0 (the
    rollouts list opens a rollout at its first decisive token: g goes back to the first)."""
    await settle(pilot)
    await press(pilot, "enter", "enter")
    assert isinstance(pilot.app.screen, RolloutsScreen)
    await press(pilot, "enter")
    screen = pilot.app.screen
    assert isinstance(screen, RolloutScreen)
    await press(pilot, "g")
    return screen


async def test_drill_down_and_step_through_tokens(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        await press(pilot, "enter")
        assert isinstance(app.screen, QuestionsScreen) and app.screen.frame.height == 3
        await press(pilot, "enter")
        rollouts = app.screen
        assert isinstance(rollouts, RolloutsScreen) and rollouts.frame.height == 2
        first = rollouts.frame["first_decisive"][0]
        await press(pilot, "enter")
        screen = app.screen
        assert isinstance(screen, RolloutScreen)
        view = screen.query_one(TokenView)
        # the rollout opens at its first decisive token
        assert (screen.question_id, screen.rollout, screen._pos_at(view.cursor)) == (
            "q0", 0, first or 0)
        await press(pilot, "g")
        assert view.cursor == 0
        await press(pilot, "l", "l")
        assert view.cursor == 2 and screen.detail is not None and screen.detail.pos == 2
        assert screen.detail.candidates.height == 2
        await press(pilot, "h")
        assert view.cursor == 1
        significant = expected_significant(0, 0, 0)
        assert screen.significant_indices() == significant
        after = [i for i in significant if i > view.cursor]
        assert len(after) >= 2
        await press(pilot, "right_curly_bracket")
        assert view.cursor == after[0]
        await press(pilot, "n")
        assert view.cursor == after[1]
        await press(pilot, "N")
        assert view.cursor == after[0]
        await press(pilot, "G")
        assert view.cursor == tui_tiny_db.N_TOKENS - 1
        await press(pilot, "g")
        assert view.cursor == 0
        await press(pilot, "j")
        assert view.line_of(view.cursor) == 1
        await press(pilot, "k")
        assert view.line_of(view.cursor) == 0
        await press(pilot, "right_square_bracket")
        assert (screen.question_id, screen.rollout) == ("q0", 1)
        await press(pilot, "right_square_bracket")
        assert (screen.question_id, screen.rollout) == ("q1", 0)
        await press(pilot, "left_square_bracket")
        assert (screen.question_id, screen.rollout) == ("q0", 1)
        await press(pilot, "q")
        assert isinstance(app.screen, RolloutsScreen)
        await press(pilot, "q")
        assert isinstance(app.screen, QuestionsScreen)
        await press(pilot, "escape")
        assert isinstance(app.screen, OverviewScreen)


def test_the_tiny_run_has_labels_of_both_kinds() -> None:
    """The marker tests below are only meaningful if the expected sets are non-trivial."""
    for ti in (0, 1):
        labels = set(expected_labels(0, 0, ti).values())
        assert labels == {"helps", "hurts"}, (ti, labels)
    assert expected_significant(0, 0, 0) != expected_significant(0, 0, 0, score="cos")


async def test_teacher_and_signal_change_the_markers(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_rollout(pilot)
        await press(pilot, "2")
        assert app.teacher == "weak"
        assert screen.significant_indices() == expected_significant(0, 0, 1)
        await press(pilot, "s")
        assert app.signal == "fkl"
        assert screen.significant_indices() == expected_significant(0, 0, 1, "fkl")
        await press(pilot, "t")  # the sharpened control: edge 0 by construction, never labelled
        assert app.teacher == "ctrl_sharpened" and screen.significant_indices() == []
        view = screen.query_one(TokenView)
        await press(pilot, "n")
        assert view.cursor == 0


async def test_layers_cycle_and_marker_survives_every_layer(db: Path) -> None:
    """Every layer marks the edge labels, except the cos and beyond layers: their own."""
    own = {"align": "cos", "beyond": "beyond"}
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_rollout(pilot)
        seen = [screen.layer.id]
        for _ in LAYERS:
            await press(pilot, "c")
            seen.append(screen.layer.id)
            score = own.get(screen.layer.id, "edge")
            want = expected_significant(0, 0, 0, score=score)
            if screen.layer.id == "diff":  # marks where strong's label and weak's differ
                assert screen.other_teacher == "weak"
                rank = {"helps": 1, "hurts": -1}
                mine, other = expected_labels(0, 0, 0), expected_labels(0, 0, 1)
                want = sorted(p for p in set(mine) | set(other)
                              if rank.get(mine.get(p, ""), 0) != rank.get(other.get(p, ""), 0))
            assert screen.significant_indices() == want, screen.layer.id
        assert seen[0] == seen[-1] and set(seen) == {layer.id for layer in LAYERS}
        await press(pilot, "C")
        assert screen.layer.id == LAYERS[-1].id


async def test_default_layer_is_the_edge_on_its_own_scale(db: Path) -> None:
    """The rollout opens on the edge layer: colours are the edge (cos - cos_sharp) over
    [-2, 2], markers the edge labels, and the title says so."""
    from opd_tui.render import diverging, marker_glyph

    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_rollout(pilot)
        assert screen.layer.id == "edge" and LAYERS[0].id == "edge"
        paint = screen.query_one(TokenView).paint
        labels = expected_labels(0, 0, 0)
        for pos in range(tui_tiny_db.N_TOKENS):
            edge = None
            if pos % 2 == 0 and pos != tui_tiny_db.NO_SIGNAL_POS:
                edge = tui_tiny_db.cos_value(0, 0, pos, 0) - tui_tiny_db.cos_value(0, 0, pos, 2)
            assert paint.styles[pos] == diverging(edge, 2.0), pos
            assert paint.markers[pos] == marker_glyph(labels.get(pos)), pos
        assert "edge" in str(screen.query_one("#title").render())


async def test_search_token_text(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_rollout(pilot)
        await press(pilot, "slash")
        for ch in "t10":
            await pilot.press(ch)
        await press(pilot, "enter")
        view = screen.query_one(TokenView)
        assert view.cursor == 10 and app.focused is view  # Enter hands the keys back
        assert not screen.query_one("#search").has_class("visible")
        # n / N step through the matches of a text every other token holds, wrapping
        hits = [i for i, t in enumerate(view.paint.texts) if "t" in t.lower()]
        assert len(hits) >= 3
        await press(pilot, "g", "slash", "t", "enter")
        a = view.cursor
        await press(pilot, "n")
        b = view.cursor
        await press(pilot, "n")
        c = view.cursor
        assert a in hits and b in hits and c in hits and a < b < c
        await press(pilot, "N")
        assert view.cursor == b
        await press(pilot, "N")
        assert view.cursor == a


async def test_help_palette_and_footer_come_from_the_registry(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_rollout(pilot)
        titles = [c.title for c in app.get_system_commands(screen)]
        expected = [a for a in actions.for_scope("rollout") if a.id != "app.palette"]
        assert len(titles) == len(expected)
        for a, title in zip(expected, titles, strict=True):
            assert title.startswith(a.description) and a.key_label in title
        await press(pilot, "question_mark")
        assert isinstance(app.screen, TextModal)
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(app.screen.body)
        body = console.export_text()
        for a in actions.for_scope("rollout"):
            assert a.id in body
        await press(pilot, "escape")
        assert app.screen is screen
        footer_ids = {b.id for _, b, *_ in screen.active_bindings.values()}
        assert {"rollout.next_significant", "app.help"} <= footer_ids


def test_every_binding_has_one_registered_id() -> None:
    ids = [a.id for a in actions.ACTIONS]
    assert len(ids) == len(set(ids))
    for cls in (OpdApp, OverviewScreen, QuestionsScreen, RolloutScreen, TextModal):
        for binding in cls.BINDINGS:
            base = binding.id.rsplit(".", 1)[0] if binding.id.count(".") > 1 else binding.id
            assert actions.by_id(base).description == binding.description
    with pytest.raises(ValueError, match="already registered"):
        actions.register(actions.Action("app.help", "x", "dup", "app"))


async def test_show_and_copy_the_sql(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_rollout(pilot)
        await press(pilot, "v")
        assert isinstance(app.screen, TextModal)
        sql = app.screen.copy_text
        assert "FROM tokens WHERE question_id = 'q0' AND rollout = 0" in sql
        await press(pilot, "y")
        assert app.clipboard == sql
        rows = duckdb.connect(str(db), read_only=True).sql(sql.split(";")[0]).fetchall()
        assert len(rows) == tui_tiny_db.N_TOKENS


async def test_questions_filter_errors_inline_and_sort(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "enter")
        screen = app.screen
        assert isinstance(screen, QuestionsScreen)
        await press(pilot, "f")
        for ch in "nope > 1":
            await pilot.press(ch)
        await press(pilot, "enter")
        assert "nope" in str(screen.query_one("#filter-error").render())
        assert screen.frame.height == 3 and isinstance(app.screen, QuestionsScreen)
        # the error keeps focus in the filter: the correction is typed there, not run as keys
        assert isinstance(app.focused, Input) and app.focused.id == "filter"
        await press(pilot, *["backspace"] * 8)
        for ch in "accuracy > 0":
            await pilot.press(ch)
        await press(pilot, "enter")
        assert screen.frame["question_id"].to_list() == ["q1", "q2"]
        table = screen.query_one("DataTable")
        table.move_cursor(column=screen.frame.columns.index("question_id"))
        await press(pilot, "o")
        assert (screen.order_by, screen.descending) == ("question_id", False)
        await press(pilot, "o")
        assert screen.frame["question_id"].to_list() == ["q2", "q1"]


async def test_small_terminal_and_resize(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_rollout(pilot)
        split = screen.query_one("#split")
        assert split.has_class("narrow")
        await pilot.resize_terminal(160, 40)
        await settle(pilot)
        assert not split.has_class("narrow")
        view = screen.query_one(TokenView)
        await press(pilot, "G")
        assert view.cursor == tui_tiny_db.N_TOKENS - 1


async def test_live_run_directory_and_refresh(db: Path, tmp_path: Path) -> None:
    run_dir = tui_tiny_db.live_dir(db, tmp_path / "live", ["q0"])
    app = make_app(run_dir)
    assert app.db.live
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.info.counts["questions"] == 1
        tui_tiny_db.live_dir(db, run_dir, ["q1"])
        await press(pilot, "r")
        assert app.info.counts["questions"] == 2
        await press(pilot, "enter")
        assert app.screen.frame.height == 2


def test_cli_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.duckdb")]) == 2
    assert "no such file" in capsys.readouterr().err
    monkeypatch.setattr("opd_tui.cli.DEMO", tmp_path / "demo.duckdb")
    with pytest.raises(SystemExit, match="opd-engine toy build"):
        resolve_path(None)


def test_run_is_read_only(db: Path) -> None:
    run = Run(db)
    with pytest.raises(duckdb.Error):
        run.cursor().execute("DELETE FROM tokens")
    run.close()


def test_app_never_imports_torch(db: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from opd_tui.app import make_app\n"
        "import opd_tui.cli\n"
        "async def go():\n"
        f"    app = make_app({str(db)!r})\n"
        "    async with app.run_test(size=(80, 24)) as pilot:\n"
        "        await pilot.pause(); await app.workers.wait_for_complete()\n"
        "        for k in ('enter', 'enter', 'l', 'c', 'question_mark'):\n"
        "            await pilot.press(k); await pilot.pause()\n"
        "        await app.workers.wait_for_complete()\n"
        "asyncio.run(go())\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'engine.'))\n"
        "       and m != 'engine.runfile' and not m.startswith('engine.runfile.')]\n"
        "print('BAD', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_questions_arrive_page_by_page(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("opd_tui.screens.questions.PAGE", 2)
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "enter")
        screen = app.screen
        assert isinstance(screen, QuestionsScreen)
        assert screen.frame["question_id"].to_list() == ["q0", "q1"] and screen.more
        await press(pilot, "G")  # the cursor reaches the last loaded row: the next page loads
        assert screen.frame["question_id"].to_list() == tui_tiny_db.QUESTIONS
        assert not screen.more and screen.query_one("DataTable").row_count == 3


async def test_advantage_layer_colours_by_the_teachers_advantage(db: Path) -> None:
    from opd_tui.render import diverging

    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_rollout(pilot)
        await press(pilot, "2")  # teacher 'weak': advantage 0.01 at every probed node with signal
        while screen.layer.id != "advantage":
            await press(pilot, "c")
        styles = screen.query_one(TokenView).paint.styles
        # the tiny run stores A_c = 0.01 * teacher index (0 without signal, where S is flat):
        # the scale (95% quantile of |A|) is 0.01
        expected = [None if pos % 2 else diverging(
            0.0 if pos == tui_tiny_db.NO_SIGNAL_POS else 0.01, 0.01)
            for pos in range(tui_tiny_db.N_TOKENS)]
        assert styles == expected and "advantage" in screen.layer_name()


async def test_cached_lines_follow_the_cursor(db: Path) -> None:
    """Lines served from the strip cache equal a fresh rendering after every kind of move."""
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_rollout(pilot)
        view = screen.query_one(TokenView)
        for key in ("l", "l", "j", "n", "G", "c", "g", "k"):
            await press(pilot, key)
            base = view.rich_style
            for y in range(len(view._line_starts)):
                cached = view.render_line(y)
                fresh = view._render_display_line(y, view.scrollable_content_region.width, base)
                assert list(cached) == list(fresh), (key, y)
            cursor_line = view.line_of(view.cursor)
            reversed_lines = {y for y in range(len(view._line_starts))
                              if any(s.style and s.style.reverse for s in view.render_line(y))}
            assert reversed_lines == {cursor_line}, key


async def test_next_significant_matches_a_scan(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_rollout(pilot)
        view = screen.query_one(TokenView)
        marked = [i for i, m in enumerate(view.paint.markers) if m]
        assert marked
        for start in range(tui_tiny_db.N_TOKENS):
            view.cursor = start
            after = [i for i in marked if i > start]
            before = [i for i in marked if i < start]
            assert view.next_significant(1) == (after[0] if after else None)
            assert view.next_significant(-1) == (before[-1] if before else None)


async def test_no_color_keeps_the_markers(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR: every colour is grey, and helps/hurts stay readable from text attributes
    (underline; bold helps, italic hurts), with no character inserted into the text."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.no_color
        screen = await open_rollout(pilot)
        view = screen.query_one(TokenView)
        segments = [s for y in range(len(view._line_starts))
                    for s in view.render_lines(view.region.reset_offset)[y]]
        colours = [c for s in segments if s.style for c in (s.style.color, s.style.bgcolor) if c]
        assert colours and all(len(set(c.get_truecolor())) == 1 for c in colours)
        text = "".join(s.text for s in segments).rstrip()
        assert "⁺" not in text and "⁻" not in text
        assert text == "".join(view.paint.texts[: len(text)]) or " " in text  # no insertions
        marked = len(expected_significant(0, 0, 0))
        underlined = [s for s in segments if s.style and s.style.underline]
        assert len(underlined) == marked
        helps = [i for i, m in enumerate(view.paint.markers) if m == "⁺"]
        hurts = [i for i, m in enumerate(view.paint.markers) if m == "⁻"]
        assert sum(1 for s in underlined if s.style.bold) == len(helps) + (
            view.cursor in hurts)  # the cursor is bold too
        assert sum(1 for s in underlined if s.style.italic) == len(hurts)


def test_palettes_stay_distinct_in_256_colours() -> None:
    from rich.color import ColorSystem

    from opd_tui.render import CATEGORICAL, diverging, sequential

    def eight_bit(style) -> int:  # type: ignore[no-untyped-def]
        return style.bgcolor.downgrade(ColorSystem.EIGHT_BIT).number

    extremes = {eight_bit(diverging(v)) for v in (-1.0, -0.5, 0.0, 0.5, 1.0)}
    assert len(extremes) == 5
    assert len({eight_bit(sequential(v, 1.0)) for v in (0.0, 0.5, 1.0)}) == 3
    from rich.color import Color
    assert len({Color.from_rgb(*rgb).downgrade(ColorSystem.EIGHT_BIT).number
                for rgb in CATEGORICAL}) == len(CATEGORICAL)


async def test_mostly_unverifiable_run_warns_on_the_overview(tmp_path: Path) -> None:
    path = tui_tiny_db.build(tmp_path / "unjudged.duckdb")
    con = duckdb.connect(str(path))
    n = con.execute("SELECT count(*) FROM rollouts").fetchone()[0]
    con.execute("UPDATE rollouts SET verdict = 'unverifiable', correct = NULL "
                "WHERE rowid IN (SELECT rowid FROM rollouts LIMIT ?)", [n // 2 + 1])
    con.close()
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        text = str(app.screen.query_one("#config").render())
        assert "WARNING" in text and f"({n // 2 + 1} of {n}) are unverifiable" in text
    clean = make_app(tui_tiny_db.build(tmp_path / "judged.duckdb"))
    assert clean.info.warnings == []


async def test_palette_on_the_rollout_screen_shows_bracket_keys(db: Path) -> None:
    """Regression: the title "Search token text  [/]" was parsed as markup (MarkupError)."""
    app = make_app(db)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_rollout(pilot)
        await press(pilot, "ctrl+p")
        for ch in "search":
            await press(pilot, ch)
        from textual.command import CommandList
        options = app.screen.query_one(CommandList)
        shown = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("Search token text" in s and "[/]" in s for s in shown), shown


async def test_console_reopens_and_no_color_grid_renders(db: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Regressions: reopening the console hit DuckDB's locked configuration (its instance was
    shared with the app's connection); NO_COLOR crashed on the grid's unstyled padding; and
    opening the console created ./opd-exports."""
    from opd_tui.console import ConsoleScreen

    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("OPD_TUI_EXPORT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(3):
            await press(pilot, "colon")
            screen = app.screen
            assert isinstance(screen, ConsoleScreen) and screen.sandbox is not None
            screen.run_sql("SELECT 41 + 1 AS answer, NULL AS nothing")
            await settle(pilot)
            assert screen.last_error is None
            assert screen.window is not None and screen.window.rows(0, 1) == [(42, None)]
            await press(pilot, "escape", "escape")
            assert not isinstance(app.screen, ConsoleScreen)
        # the app's own connection is not locked down by the sandbox
        cur = app.db.cursor()
        assert cur.execute("SELECT current_setting('enable_external_access')").fetchone() == (True,)
    assert not (tmp_path / "opd-exports").exists()


def _edge(qi: int, rollout: int, pos: int, ti: int, signal: str = "rkl") -> float:
    factor = 1.0 if signal == "rkl" else 0.5
    return (tui_tiny_db.cos_value(qi, rollout, pos, ti)
            - tui_tiny_db.cos_value(qi, rollout, pos, 2)) * factor


async def test_questions_list_edge_decisive_and_hurts_per_teacher(db: Path) -> None:
    """Per teacher: mean edge over the question's decisive nodes and its own hurts count (a
    count summed over teachers would count a node once per teacher); controls get an edge
    column only; the question text is a column and, for the cursor row, a line below."""
    app = make_app(db)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "enter")
        screen = app.screen
        assert isinstance(screen, QuestionsScreen)
        frame = screen.frame
        assert "hurts" not in frame.columns and "hurts_ctrl_sharpened" not in frame.columns
        assert {"n_decisive", "edge_strong", "hurts_strong", "edge_weak", "hurts_weak",
                "edge_ctrl_sharpened", "question"} <= set(frame.columns)
        both_hurt = False
        for qi, row in enumerate(frame.iter_rows(named=True)):
            decisive = [pos for pos in range(0, tui_tiny_db.N_TOKENS, 2)
                        if pos != tui_tiny_db.NO_SIGNAL_POS and _decisive(qi, pos)]
            assert row["n_decisive"] == 2 * len(decisive)
            for ti, name in ((0, "strong"), (1, "weak")):
                hurts = sum(list(expected_labels(qi, r, ti).values()).count("hurts")
                            for r in range(2))
                assert row[f"hurts_{name}"] == hurts, (qi, name)
                edges = [_edge(qi, r, pos, ti) for r in range(2) for pos in decisive]
                assert row[f"edge_{name}"] == pytest.approx(sum(edges) / len(edges))
            assert row["edge_ctrl_sharpened"] == 0
            assert row["question"] == f"what is {qi}?"
            both_hurt |= row["hurts_strong"] > 0 and row["hurts_weak"] > 0
        assert both_hurt  # so that a sum over teachers would differ from each count
        assert "q0: what is 0?" in str(screen.query_one("#question-text").render())
        await press(pilot, "down")
        assert "q1: what is 1?" in str(screen.query_one("#question-text").render())


def _inspector_text(screen: RolloutScreen) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(screen.query_one("#inspector-body").content)
    return console.export_text()


def _table_rows(text: str, title: str, next_title: str) -> list[list[str]]:
    """Whitespace-split rows of the inspector table titled `title` (header skipped)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next(i for i, line in enumerate(lines) if i > start and line.startswith(next_title))
    rows = [line.split() for line in lines[start + 1:end]]
    return [r for r in rows if r and r[0] in ("strong", "weak", "ctrl_sharpened")]


async def test_inspector_shows_stakes_s_over_n_labels_residuals_and_best_reason(
        db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await open_rollout(pilot)
        view = screen.query_one(TokenView)
        for pos in (0, 2, 4, 6, 10):
            view.move_to(pos)
            await settle(pilot)
            assert screen.detail is not None and screen.detail.pos == pos
            text = _inspector_text(screen)
            s0, s1 = tui_tiny_db.successes(0, pos)
            assert f"{s0}/20" in text and f"{s1}/20" in text  # s/N beside every S
            alt = next(line for line in text.splitlines() if line.startswith(" alt"))
            plausible = pos != tui_tiny_db.IMPLAUSIBLE_POS
            assert (re.match(r" alt\s+\+\s", alt) is not None) == plausible, alt
            if pos == tui_tiny_db.NO_SIGNAL_POS:
                assert "no_signal" in text and "best teacher ∅ (no_signal)" in text
                assert "not decisive" in text
                continue
            stakes = 0.0 if not plausible else abs(s0 - s1) / 20
            lo, hi = max(0.0, stakes - 0.1), min(1.0, stakes + 0.1)
            shown = f"stakes {stakes:.2f}[{lo:.2f},{hi:.2f}]".replace("0.", ".")
            assert shown in text, (pos, shown)
            assert ("DECISIVE" in text) == (stakes >= TAU)
            assert ("not decisive" in text) == (stakes < TAU)
            assert f"|C+| {2 if plausible else 1}" in text
            # best teacher: the rkl edge leader of strong / weak, confident by the draw share
            e0, e1 = _edge(0, 0, pos, 0), _edge(0, 0, pos, 1)
            margin = abs(e0 - e1)
            prob = min(1.0, 0.5 + 2 * margin)
            if stakes < TAU:
                assert "(not_decisive" in text
            elif prob < 0.9:
                assert "(tie" in text and f"margin {margin:+.2f}" in text
            else:
                leader = "strong" if e0 >= e1 else "weak"
                assert f"best teacher {leader} (p {prob:.2f}, margin {margin:+.2f})" in text
            # edge with its interval and label, per teacher x signal
            edge_rows = _table_rows(text, "edge = cos - cos_sharp", "beyond sharpening")
            assert len(edge_rows) == 6
            for name, sig, interval, label, *_ in edge_rows:
                ti = ("strong", "weak", "ctrl_sharpened").index(name)
                expected = _edge(0, 0, pos, ti, sig) if ti != 2 else 0.0
                assert float(interval.split("[")[0]) == pytest.approx(expected, abs=0.006)
                assert label == expected_labels(0, 0, ti, sig).get(pos, "neutral"), (pos, name)
            # beyond sharpening with d's residual share, or its NULL reason
            assert f"|Pg|²/|g|² = {0.03 if pos == 6 else 0.6:.3f}" in " ".join(text.split())
            beyond_rows = _table_rows(text, "beyond sharpening", "proxies")
            assert len(beyond_rows) == 6
            for row in beyond_rows:
                ti = ("strong", "weak", "ctrl_sharpened").index(row[0])
                share = tui_tiny_db.d_residual_share(pos, ti)
                assert float(row[4]) == pytest.approx(share, abs=5e-4)
                if ti == 2:
                    assert row[2] == "∅" and row[5] == "pure_sharpening"
                elif pos == 6 or share < 0.05:
                    assert row[2] == "∅" and row[5] == "sharpening_dominated", (pos, row)
                else:
                    assert row[2] != "∅" and len(row) == 5


async def test_prompts_show_what_each_teacher_saw_at_this_rollout(db: Path) -> None:
    """p: question-level prompts, the rollout's own prompt of a contrastive teacher (not the
    other rollout's) and the generated contexts with the model that wrote them."""
    app = make_app(db)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_rollout(pilot)
        assert screen.rollout == 0
        await press(pilot, "p")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, TextModal)
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(app.screen.body)
        body = console.export_text()
        assert "strong sees Q0" in body and "\x1b" not in body
        assert "contrast for Q0 r0" in body and "r1" not in body
        assert f"── {tui_tiny_db.CONTRASTIVE} (4 tokens, rollout 0)" in body
        assert "context {summary} written by student (3 tokens)" in body and "sum of Q0" in body


async def test_escape_never_quits_and_q_quits_only_from_the_overview(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "escape", "escape", "escape")
        assert isinstance(app.screen, OverviewScreen) and app.is_running
        assert any("q quits" in str(n.message) for n in app._notifications)
        await press(pilot, "enter", "q")
        assert isinstance(app.screen, OverviewScreen) and app.is_running
        await press(pilot, "q")
        assert not app.is_running


async def test_rollouts_list_and_steps_follow_the_questions_filter(db: Path) -> None:
    """The question's rollouts with their first decisive token and worst teacher (checked
    against the tables), the question in the rollout header, and `]` staying inside the
    filtered Questions list."""
    con = duckdb.connect(str(db), read_only=True)
    app = make_app(db)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "enter")
        questions = app.screen
        assert isinstance(questions, QuestionsScreen)
        await press(pilot, "j", "l", "k", "h")  # hjkl move the cursor like the arrows
        assert tuple(questions.query_one("#questions").cursor_coordinate) == (0, 0)
        await press(pilot, "f")
        for ch in "question_id <> 'q1'":
            await pilot.press(ch)
        await press(pilot, "enter")
        assert questions.frame["question_id"].to_list() == ["q0", "q2"]
        await press(pilot, "enter")
        rollouts = app.screen
        assert isinstance(rollouts, RolloutsScreen)
        for row in rollouts.frame.iter_rows(named=True):
            first = con.execute("SELECT min(pos) FROM nodes WHERE question_id = 'q0' AND "
                                "rollout = ? AND decisive", [row["rollout"]]).fetchall()[0][0]
            worst = con.execute("""
                SELECT s.teacher FROM scores s JOIN nodes n USING (question_id, rollout, pos)
                JOIN teachers te USING (teacher)
                WHERE s.question_id = 'q0' AND s.rollout = ? AND s.signal = 'rkl'
                  AND n.decisive AND NOT te.is_control AND s.edge IS NOT NULL
                GROUP BY s.teacher ORDER BY avg(s.edge) LIMIT 1""",
                                [row["rollout"]]).fetchall()
            assert row["first_decisive"] == first
            assert row["worst_teacher"] == (worst[0][0] if worst else None)
        await press(pilot, "j", "enter")
        screen = app.screen
        assert isinstance(screen, RolloutScreen) and (screen.question_id, screen.rollout) == (
            "q0", 1)
        header = str(screen.query_one("#question").render())
        assert "what is 0?" in header and "answer 42" in header
        await press(pilot, "right_square_bracket")
        assert (screen.question_id, screen.rollout) == ("q2", 0)  # q1 is filtered out
        await press(pilot, "left_square_bracket")
        assert (screen.question_id, screen.rollout) == ("q0", 1)
    con.close()


async def test_no_color_verdict_stays_readable(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR greys every colour: the rollout title's verdict must still stand out, by
    attributes (reverse + bold), not by a grey close to the background."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_rollout(pilot)
        title = screen.query_one("#title").render()
        spans = [s for s in title.spans if "incorrect" in title.plain[s.start:s.end]]
        assert spans, title.plain
        style = spans[0].style
        assert style.reverse and style.bold
