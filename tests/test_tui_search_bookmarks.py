"""Search across rollouts (F) and bookmarks (m, B), driven on the real app over the demo run.

Search results are checked against a brute-force Python scan of the tokens table; bookmarks
against the JSON file they persist to (XDG_DATA_HOME points into the test's tmp_path).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb
import pytest
from textual.pilot import Pilot
from tui_pilot import press, settle

from opd_tui import bookmarks
from opd_tui.app import OpdApp, make_app
from opd_tui.bookmarks import BookmarkError, BookmarkStore, run_key
from opd_tui.cli import DEMO
from opd_tui.screens import search as search_mod
from opd_tui.screens.bookmarks import BookmarksScreen
from opd_tui.screens.modals import TextModal
from opd_tui.screens.rollout import RolloutScreen
from opd_tui.screens.search import SearchScreen, search
from opd_tui.widgets.token_view import TokenView

pytestmark = pytest.mark.skipif(not DEMO.exists(), reason="demo database not built")


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Bookmarks (and any history) go to the test's own data directory, never $HOME."""
    data = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setattr(RolloutScreen, "INSPECTOR_DELAY", 0.001)
    return data


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every notification the app shows, as (severity, message)."""
    seen: list[tuple[str, str]] = []
    original = OpdApp.notify

    def notify(self: OpdApp, message: str, *args: Any, **kwargs: Any) -> None:
        seen.append((str(kwargs.get("severity", "information")), str(message)))
        original(self, message, *args, **kwargs)

    monkeypatch.setattr(OpdApp, "notify", notify)
    return seen


def bookmarks_file() -> Path:
    return bookmarks.bookmarks_path()


async def type_text(pilot: Pilot, text: str) -> None:
    for ch in text:
        await pilot.press(ch)
    await settle(pilot)


# -- brute force ---------------------------------------------------------------------------


def token_rows(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, int], list[tuple[int, Any]]]:
    out: dict[tuple[str, int], list[tuple[int, Any]]] = {}
    for q, r, pos, text in con.execute(
            "SELECT question_id, rollout, pos, token_text FROM tokens").fetchall():
        out.setdefault((q, r), []).append((pos, text))
    return {k: sorted(v) for k, v in out.items()}


def brute(con: duckdb.DuckDBPyConnection, needle: str) -> dict[tuple[str, int], tuple[int, int]]:
    """(question, rollout) -> (non-overlapping matches, pos of the token where the first
    match starts), by a plain loop over the tokens."""
    n = needle.lower()
    out = {}
    for key, toks in token_rows(con).items():
        text = "".join((t or "") for _, t in toks).lower()
        hit = text.find(n)
        if hit < 0:
            continue
        offset, first_pos = 0, None
        for pos, t in toks:
            if offset <= hit < offset + len(t or ""):
                first_pos = pos
                break
            offset += len(t or "")
        out[key] = (text.count(n), first_pos)
    return out


def demo() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(DEMO), read_only=True)


def hostile_copy() -> duckdb.DuckDBPyConnection:
    """The demo's tokens and rollouts in memory, with NULL and empty texts and multi-character
    tokens (mixed case, non-ASCII) planted where matches start mid-token and span tokens."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{DEMO}' AS demo (READ_ONLY)")
    con.execute("CREATE TABLE tokens AS SELECT * FROM demo.tokens")
    con.execute("CREATE TABLE rollouts AS SELECT * FROM demo.rollouts")
    con.execute("DETACH demo")
    plant = {  # q000 rollout 0: "8-0=8" then NULL, "", "HeLLo wör", "", "ld!", NULL, "日本"
        ("q000", 0): {5: None, 6: "", 7: "HeLLo wör", 8: "", 9: "ld!", 10: None, 11: "日本"},
        ("q000", 1): {0: "", 1: None, 2: "xxHELLO", 3: " WÖRLD", 4: ""},
        ("q001", 0): {3: "hello", 4: None, 5: " wörld hello", 6: " wö", 7: "rld"},
    }
    for (q, r), texts in plant.items():
        for pos, text in texts.items():
            con.execute("UPDATE tokens SET token_text = ? WHERE question_id = ? AND rollout = ? "
                        "AND pos = ?", [text, q, r, pos])
    return con


# -- search: the query against brute force ---------------------------------------------------


@pytest.mark.parametrize("needle", ["-1-1", "EOS>", "##", "=8;1", "4-3-1=0 ####", "8-0=8",
                                    "zzz"])
def test_search_matches_brute_force_on_the_demo(needle: str) -> None:
    con = demo()
    result = search(con, needle, limit=10_000, context=5)
    expected = brute(con, needle)
    got = {(h.question_id, h.rollout): (h.matches, h.first_pos) for h in result.hits}
    assert got == expected
    assert result.rollouts == len(expected)
    assert result.matches == sum(m for m, _ in expected.values())
    check_snippets(con, result, needle, 5)
    cuts = {(h.cut_before, h.cut_after) for h in result.hits}
    if needle == "EOS>":
        assert cuts == {(True, False)}  # at the end of long texts
    if needle == "-1-1":
        assert cuts == {(True, True)}  # mid-text
    if needle == "8-0=8":
        assert (False, True) in cuts  # q000 starts with it


@pytest.mark.parametrize("needle", ["llo wörld", "o wö", "LD!", "xxhello wö", "hello", "日本",
                                    "wö", "rld", "=8he"])
def test_search_offsets_with_null_empty_and_multichar_tokens(needle: str) -> None:
    con = hostile_copy()
    result = search(con, needle, limit=10_000)
    expected = brute(con, needle)
    assert expected, "the planted text must match somewhere"
    got = {(h.question_id, h.rollout): (h.matches, h.first_pos) for h in result.hits}
    assert got == expected
    check_snippets(con, result, needle)


def check_snippets(con: duckdb.DuckDBPyConnection, result: search_mod.SearchResult,
                   needle: str, context: int = search_mod.CONTEXT) -> None:
    """Each snippet is the exact text around the first match, "…" where it is cut."""
    texts = {k: "".join(t or "" for _, t in toks) for k, toks in token_rows(con).items()}
    for h in result.hits:
        text = texts[(h.question_id, h.rollout)]
        at = text.lower().find(needle.lower())
        lo = max(at - context, 0)
        assert h.before == text[lo:at] and h.match == text[at:at + len(needle)]
        assert h.after == text[at + len(needle):at + len(needle) + context]
        assert (h.cut_before, h.cut_after) == (lo > 0, at + len(needle) + len(h.after) < len(text))
        plain = search_mod.snippet(h).plain
        assert plain.startswith("…") == h.cut_before and plain.endswith("…") == h.cut_after


def test_mid_token_match_maps_to_the_token_it_starts_in() -> None:
    con = hostile_copy()
    hits = {(h.question_id, h.rollout): h for h in search(con, "llo wörld").hits}
    assert hits[("q000", 0)].first_pos == 7  # "HeLLo wör": starts mid-token, spans NULL, ""
    assert hits[("q000", 0)].match == "LLo wörld"  # original case, across the tokens
    assert hits[("q000", 1)].first_pos == 2
    h = hits[("q001", 0)]
    assert (h.first_pos, h.matches) == (3, 2)  # "hello" + NULL + " wörld hello" ... " wö"+"rld"


# -- search: the screen --------------------------------------------------------------------


async def open_search(pilot: Pilot, needle: str) -> SearchScreen:
    await settle(pilot)
    await press(pilot, "F")
    screen = pilot.app.screen
    assert isinstance(screen, SearchScreen)
    await type_text(pilot, needle)
    await press(pilot, "enter")
    return screen


async def test_search_screen_lists_rollouts_opens_at_match_and_n_continues() -> None:
    needle = "-1"
    expected = brute(demo(), needle)
    app = make_app(DEMO)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await open_search(pilot, needle)
        assert screen.result is not None
        listed = [(h.question_id, h.rollout, h.matches, h.first_pos) for h in screen.result.hits]
        assert listed == [(q, r, m, p) for (q, r), (m, p) in sorted(expected.items())]
        table = screen.query_one("#hits")
        assert table.row_count == len(expected)
        summary = str(screen.query_one("#summary").render())
        assert f"{sum(m for m, _ in expected.values()):,} matches" in summary
        assert "not shown" not in summary
        # a rollout with several matches: Enter lands on its first, n goes to the next
        row = next(i for i, h in enumerate(screen.result.hits) if h.matches >= 3)
        hit = screen.result.hits[row]
        await press(pilot, *["j"] * row)
        assert table.cursor_row == row
        await press(pilot, "enter")
        rollout = app.screen
        assert isinstance(rollout, RolloutScreen)
        assert (rollout.question_id, rollout.rollout) == (hit.question_id, hit.rollout)
        assert rollout.search_text == needle
        view = rollout.query_one(TokenView)
        assert rollout._pos_at(view.cursor) == hit.first_pos
        toks = token_rows(demo())[(hit.question_id, hit.rollout)]
        text = "".join(t or "" for _, t in toks).lower()
        starts, offset = [], 0
        for _, t in toks:
            starts.append(offset)
            offset += len(t or "")
        first = text.find(needle)
        second = text.find(needle, first + 1)
        third = text.find(needle, second + 1)
        pos_of = {i: p for i, (p, _) in enumerate(toks)}

        def token_at(off: int) -> int:
            return pos_of[max(i for i, s in enumerate(starts) if s <= off and toks[i][1])]

        await press(pilot, "n")
        assert rollout._pos_at(view.cursor) == token_at(second) != hit.first_pos
        await press(pilot, "n")
        assert rollout._pos_at(view.cursor) == token_at(third)
        await press(pilot, "N")
        assert rollout._pos_at(view.cursor) == token_at(second)
        await press(pilot, "escape")
        assert app.screen is screen
        await press(pilot, "escape")
        assert not isinstance(app.screen, SearchScreen)


async def test_search_caps_the_list_and_says_how_many_are_hidden(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_mod, "MAX_HITS", 50)
    expected = brute(demo(), "EOS>")  # every rollout ends in <eos>: a match starting mid-token
    assert len(expected) > 50
    app = make_app(DEMO)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await open_search(pilot, "EOS>")
        assert screen.result is not None and len(screen.result.hits) == 50
        assert screen.result.rollouts == len(expected)
        summary = str(screen.query_one("#summary").render())
        assert f"{len(expected) - 50:,} not shown" in summary
        for h in screen.result.hits:
            assert h.first_pos == expected[(h.question_id, h.rollout)][1]
        await press(pilot, "v")  # the SQL behind the list, runnable as shown
        assert isinstance(app.screen, TextModal)
        sql = app.screen.copy_text
        assert "string_agg" in sql and "'EOS>'" in sql
        rows = demo().sql(sql.rstrip(";")).fetchall()
        assert len(rows) == 50


async def test_empty_needle_says_so() -> None:
    app = make_app(DEMO)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await open_search(pilot, "")
        assert screen.result is None and screen.query_one("#hits").row_count == 0
        assert "empty search text" in str(screen.query_one("#summary").render())
        await press(pilot, "enter")  # nothing to open: stays put
        assert app.screen is screen
        await type_text(pilot, "no such text anywhere")
        await press(pilot, "enter")
        assert screen.result is not None and not screen.result.hits
        assert "no rollout contains" in str(screen.query_one("#summary").render())


# -- bookmarks -----------------------------------------------------------------------------


async def open_at(pilot: Pilot, q: str, r: int, pos: int) -> RolloutScreen:
    await settle(pilot)
    app = pilot.app
    assert isinstance(app, OpdApp)
    app.open_token(q, r, pos)
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, RolloutScreen)
    assert screen._pos_at(screen.query_one(TokenView).cursor) == pos
    return screen


def saved() -> list[dict[str, Any]]:
    data = json.loads(bookmarks_file().read_text(encoding="utf-8"))
    return data["runs"].get(run_key(DEMO), [])


def demo_text(q: str, r: int, pos: int) -> str:
    row = demo().execute("SELECT token_text FROM tokens WHERE question_id = ? AND rollout = ? "
                         "AND pos = ?", [q, r, pos]).fetchone()
    assert row is not None
    return str(row[0])


async def test_m_toggles_a_bookmark(notes: list[tuple[str, str]]) -> None:
    app = make_app(DEMO)
    async with app.run_test(size=(120, 34)) as pilot:
        await open_at(pilot, "q003", 1, 18)
        await press(pilot, "m")
        assert ("information", "bookmarked q003 r1 pos 18") in notes
        assert [(b["question_id"], b["rollout"], b["pos"], b["token_text"]) for b in saved()] \
            == [("q003", 1, 18, demo_text("q003", 1, 18))]
        await press(pilot, "m")
        assert notes[-1][1].startswith("bookmark removed")
        assert saved() == []
    assert not list(bookmarks_file().parent.glob(".bookmarks-*"))  # no temp file left over


async def test_bookmarks_persist_open_and_delete(notes: list[tuple[str, str]]) -> None:
    dir_before = sorted(p.name for p in DEMO.parent.iterdir())
    mtime = DEMO.stat().st_mtime_ns
    app = make_app(DEMO)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await open_at(pilot, "q005", 2, 7)
        await press(pilot, "m", "l", "m")
        await open_at(pilot, "q001", 0, 3)
        await press(pilot, "m")
        assert screen.rollout == 2
    # a second session, as after a restart
    app = make_app(str(DEMO.parent / ".." / DEMO.parent.name / DEMO.name))  # same file
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        await press(pilot, "B")
        marks = app.screen
        assert isinstance(marks, BookmarksScreen)
        assert [b.key for b in marks.marks] == [("q001", 0, 3), ("q005", 2, 7), ("q005", 2, 8)]
        assert [b.token_text for b in marks.marks] == [
            demo_text(*k) for k in [("q001", 0, 3), ("q005", 2, 7), ("q005", 2, 8)]]
        assert all(b.added for b in marks.marks)
        assert marks.query_one("#marks").row_count == 3
        await press(pilot, "j", "enter")
        rollout = app.screen
        assert isinstance(rollout, RolloutScreen)
        assert (rollout.question_id, rollout.rollout) == ("q005", 2)
        assert rollout._pos_at(rollout.query_one(TokenView).cursor) == 7
        await press(pilot, "m")  # removed here: the list follows on return
        await press(pilot, "escape")
        assert app.screen is marks and [b.key for b in marks.marks] == [
            ("q001", 0, 3), ("q005", 2, 8)]
        assert marks.query_one("#marks").cursor_row == 1  # the cursor stays on its row
        await press(pilot, "d")
        assert [b.key for b in marks.marks] == [("q001", 0, 3)]
        assert [(b["question_id"], b["pos"]) for b in saved()] == [("q001", 3)]
        await press(pilot, "d", "d")  # the last one, then nothing left to delete
        assert marks.marks == [] and saved() == []
        assert notes[-1] == ("information", "no bookmark to delete")
    # the run is never written
    assert sorted(p.name for p in DEMO.parent.iterdir()) == dir_before
    assert DEMO.stat().st_mtime_ns == mtime


async def test_a_corrupt_file_is_moved_aside_with_a_warning(
        notes: list[tuple[str, str]]) -> None:
    path = bookmarks_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    app = make_app(DEMO)
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        await press(pilot, "B")
        assert isinstance(app.screen, BookmarksScreen) and app.screen.marks == []
        assert any(s == "warning" and "corrupt" in m for s, m in notes)
        aside = path.with_name("bookmarks.json.corrupt")
        assert aside.read_text(encoding="utf-8") == "{not json"  # kept, not overwritten
        assert not path.exists()
        await open_at(pilot, "q000", 0, 2)
        await press(pilot, "m")
        assert [b["pos"] for b in saved()] == [2]
    # a second corrupt file does not overwrite the first one set aside
    path.write_text(json.dumps({"runs": {"x": [{"question_id": "q", "rollout": "zz"}]}}))
    store = BookmarkStore()
    assert store.for_run(DEMO) == [] and store.warning and "corrupt" in store.warning
    assert aside.read_text(encoding="utf-8") == "{not json"
    assert "zz" in path.with_name("bookmarks.json.1.corrupt").read_text(encoding="utf-8")


def test_store_keys_by_resolved_path_and_never_writes_into_the_run(tmp_path: Path) -> None:
    store = BookmarkStore(tmp_path / "state" / "bookmarks.json")
    assert store.toggle(DEMO, "q000", 0, 1, "-") is True
    relative = os.path.relpath(DEMO)
    assert [b.key for b in store.for_run(relative)] == [("q000", 0, 1)]
    assert store.toggle(relative, "q000", 0, 1) is False
    assert store.for_run(DEMO) == []
    assert store.remove(DEMO, "q000", 0, 1) is False
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    inside = BookmarkStore(run_dir / "state" / "bookmarks.json")
    with pytest.raises(BookmarkError, match="inside the run"):
        inside.toggle(run_dir, "q000", 0, 1)
    assert not (run_dir / "state").exists()


def test_the_new_keys_are_registered_and_shadow_nothing() -> None:
    import opd_tui.console.screen  # noqa: F401  (registers the console's actions)
    from opd_tui import actions

    new = {"app.search": "F", "app.bookmarks": "B", "rollout.bookmark": "m"}
    for action_id, key in new.items():
        assert actions.by_id(action_id).keys == key
        clash = [a.id for a in actions.ACTIONS
                 if a.id != action_id and key in a.keys.split(",")]
        assert clash == [], f"{key} is also bound by {clash}"
    for cls in (SearchScreen, BookmarksScreen):
        ids = {b.id for b in cls.BINDINGS}
        assert ids == {a.id for a in actions.ACTIONS if a.scope == cls.scope}
    assert {b.id for b in OpdApp.BINDINGS} >= {"app.search", "app.bookmarks"}
