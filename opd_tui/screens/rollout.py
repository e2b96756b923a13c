"""Rollout: tokens as flowing text coloured by a layer, with the token inspector beside them."""

from __future__ import annotations

import io
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import polars as pl
from rich.console import Console, RenderableType
from rich.style import Style
from rich.text import Text
from textual.containers import Container
from textual.events import Resize
from textual.timer import Timer
from textual.widgets import Input, Static

from opd_tui import actions
from opd_tui.queries import (
    LAYERS,
    Layer,
    NodeDetail,
    Query,
    contexts_query,
    layers_query,
    node_detail,
    node_query,
    node_scores_query,
    teacher_prompts_query,
    tokens_query,
)
from opd_tui.render import (
    categorical,
    diverging,
    ends_line,
    marker_glyph,
    quantile_scale,
    safe_text,
    sequential,
    visible_token,
)
from opd_tui.screens.base import OpdScreen
from opd_tui.screens.modals import TextModal
from opd_tui.widgets.inspector import Inspector, node_renderable
from opd_tui.widgets.legend import legend
from opd_tui.widgets.token_view import TokenPaint, TokenView
from opd_tui.widgets.value_curve import ValueCurve


def layer_paint(layer: Layer, tokens: pl.DataFrame, layers: pl.DataFrame,
                teachers: list[str], mono: bool = False) -> tuple[list[Style | None], list[str]]:
    """Per-token style and help/hurt marker for one layer (unprobed tokens: no style); `mono`:
    NO_COLOR, where categories need grey levels of their own."""
    n = tokens.height
    index = {pos: i for i, pos in enumerate(tokens["pos"].to_list())}
    source = tokens if layer.column in tokens.columns else layers
    values: list[Any] = [None] * n
    for pos, value in zip(source["pos"].to_list(), source[layer.column].to_list(), strict=True):
        if pos in index:
            values[index[pos]] = value
    labels: list[str | None] = [None] * n
    for pos, label in zip(layers["pos"].to_list(), layers[layer.label_column].to_list(),
                          strict=True):
        if pos in index:
            labels[index[pos]] = label
    if layer.kind == "categorical":
        order = {t: i for i, t in enumerate(teachers)}
        styles = [categorical(order.get(v, -1), mono) if v is not None else None
                  for v in values]
    elif layer.kind == "sequential":
        scale = layer.scale or quantile_scale(values)
        styles = [sequential(v, scale) for v in values]
    else:
        scale = layer.scale or quantile_scale(values)
        styles = [diverging(v, scale) for v in values]
    return styles, [marker_glyph(lb) for lb in labels]


@dataclass
class RolloutData:
    """Everything the rollout view shows, built off the UI thread."""

    tokens: pl.DataFrame
    layers: pl.DataFrame
    rollout_row: dict[str, Any]
    paint: TokenPaint
    layer_id: str
    full_text: str
    text_offsets: list[int]


def per_token(tokens: pl.DataFrame, layers: pl.DataFrame, column: str) -> list[Any]:
    """A node column aligned to the token indices (NULL at tokens without a node)."""
    by_pos = dict(zip(layers["pos"].to_list(), layers[column].to_list(), strict=True)) if (
        layers.height) else {}
    return [by_pos.get(pos) for pos in tokens["pos"].to_list()]


def rollout_data(tokens: pl.DataFrame, layers: pl.DataFrame, rollouts: pl.DataFrame,
                 layer: Layer, teachers: list[str], mono: bool = False) -> RolloutData:
    raw_texts = tokens["token_text"].to_list()
    texts = [
        visible_token(t, b, is_special=bool(s))
        for t, b, s in zip(raw_texts, tokens["token_bytes"].to_list(),
                           tokens["is_special"].to_list(), strict=True)
    ]
    offsets, x = [], 0
    for t in raw_texts:
        offsets.append(x)
        x += len(t or "")
    styles, markers = layer_paint(layer, tokens, layers, teachers, mono)
    paint = TokenPaint(texts, [ends_line(t) for t in raw_texts], styles, markers)
    return RolloutData(tokens, layers, rollouts.row(0, named=True) if rollouts.height else {},
                       paint, layer.id, "".join(t or "" for t in raw_texts).lower(), offsets)


class RolloutScreen(OpdScreen):
    scope = "rollout"
    BINDINGS = actions.bindings("rollout")
    HELP = ("Tokens coloured by the layer (c cycles; the legend line says what colours mean; "
            "default: edge over [-2, 2], blue helps, red hurts, plain = not probed). Underlined "
            "= labelled at a decisive node for the selected teacher and signal: bold helps, "
            "italic hurts (} { next / previous; / search, n N matches). ␣ ⏎ ⇥ whitespace, <...> "
            "special tokens, \\xNN raw bytes. The value curve (w) draws V̂ and S(y) along the "
            "rollout: where S(y) falls below V̂ the rollout was lost. The inspector says why in "
            "its first line, then stakes, candidates (▸ sampled, + in C+), edge per teacher x "
            "signal, beyond, best teacher, controls; Tab focuses it, z gives it the screen, Y "
            "copies it. D: diff layer against a second teacher. Terms: glossary below.")
    DEFAULT_CSS = """
    RolloutScreen #title { height: 1; background: $boost; }
    RolloutScreen #question { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    RolloutScreen #legend { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    RolloutScreen ValueCurve.hidden { display: none; }
    RolloutScreen #split.zoom TokenView { display: none; }
    RolloutScreen #split.zoom Inspector { width: 1fr; }
    RolloutScreen #search { display: none; }
    RolloutScreen #search.visible { display: block; }
    RolloutScreen #split { height: 1fr; layout: horizontal; }
    RolloutScreen #split.narrow { layout: vertical; }
    RolloutScreen TokenView { width: 1fr; height: 1fr; }
    RolloutScreen Inspector { width: 84; height: 1fr; }
    RolloutScreen #split.narrow Inspector { width: 1fr; border-left: none;
                                            border-top: solid $primary; }
    """

    def __init__(self, question_id: str, rollout: int, pos: int = 0, search: str = "") -> None:
        super().__init__()
        self.question_id, self.rollout, self.start_pos = question_id, rollout, pos
        self.layer_index = 0
        self.token_frame = pl.DataFrame()
        self.layer_frame = pl.DataFrame()
        self.rollout_row: dict[str, Any] = {}
        self.show_texts = False
        self.detail: NodeDetail | None = None
        self.search_text = search
        self._text_offsets: list[int] = []
        self._full_text = ""
        self.loaded = False
        self._inspector_timer: Timer | None = None
        self.other_teacher: str | None = None
        """The second teacher of the diff layer (D cycles it)."""

    @property
    def layer(self) -> Layer:
        return LAYERS[self.layer_index]

    def layer_name(self) -> str:
        return self.layer.title

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(id="title")
        yield Static(id="question")
        yield Static(id="legend")
        yield ValueCurve()
        yield Input(placeholder="search token text (Enter: next match, Esc: close)", id="search")
        with Container(id="split"):
            yield TokenView()
            yield Inspector()
        yield from self.compose_chrome()

    NARROW = 140
    """Below this width the inspector goes under the tokens instead of beside them."""

    def on_resize(self, event: Resize) -> None:
        self.query_one("#split").set_class(event.size.width < self.NARROW, "narrow")
        if self.detail is not None:  # the candidate table may now fit whole, or not
            self.call_after_refresh(self._show_detail, self.detail)

    CURVE_MIN_HEIGHT = 30
    """Below this many rows the value curve starts hidden (w shows it): 80x24 needs the room."""

    def on_mount(self) -> None:
        self.query_one("#split").set_class(self.app.size.width < self.NARROW, "narrow")
        self.query_one(ValueCurve).set_class(self.app.size.height < self.CURVE_MIN_HEIGHT,
                                             "hidden")
        self.query_one(TokenView).focus()
        self.load_rollout(self.question_id, self.rollout, self.start_pos)

    # -- loading --------------------------------------------------------------------------

    def load_rollout(self, question_id: str, rollout: int, pos: int = 0) -> None:
        """Fetch the rollout and build its paint (32k tokens: ~1 s of Python) in a worker."""
        self.question_id, self.rollout = question_id, rollout
        self.loaded = False
        teacher, signal, other = self.opd.teacher, self.opd.signal, self._other()
        layer, teachers, mono = self.layer, self.opd.info.non_control, self.app.no_color
        tq = tokens_query(question_id, rollout)
        lq = layers_query(question_id, rollout, teacher, signal, other)
        rq = Query("""SELECT r.*, q.question, q.final_answer FROM rollouts r
                      JOIN questions q USING (question_id)
                      WHERE r.question_id = ? AND r.rollout = ?""", (question_id, rollout))

        def fetch(cur: Any) -> RolloutData:
            tokens, layers = tq.run(cur), lq.run(cur)
            return rollout_data(tokens, layers, rq.run(cur), layer, teachers, mono)

        self.queries = [tq, lq]
        self.load("rollout", fetch, lambda r: self._show_rollout(r, pos))

    def _show_rollout(self, data: RolloutData, pos: int) -> None:
        self.token_frame, self.layer_frame = data.tokens, data.layers
        self.rollout_row = data.rollout_row
        self._full_text, self._text_offsets = data.full_text, data.text_offsets
        if self.layer.id != data.layer_id:  # the layer changed while loading
            data.paint = TokenPaint(data.paint.texts, data.paint.breaks, *self._layer_paint())
        index = self._index_of(pos)
        self._show_curve()
        self.query_one(TokenView).set_tokens(data.paint, index)
        self.loaded = True
        self._update_title()
        if not data.paint.texts:
            self.query_one(Inspector).show(Text("this rollout has no tokens", "dim"))

    def _index_of(self, pos: int) -> int:
        positions = self.token_frame["pos"].to_list() if self.token_frame.height else []
        return bisect_right(positions, pos) - 1 if positions else 0

    def _layer_paint(self) -> tuple[list[Style | None], list[str]]:
        return layer_paint(self.layer, self.token_frame, self.layer_frame,
                           self.opd.info.non_control, self.app.no_color)

    def _show_curve(self) -> None:
        self.query_one(ValueCurve).set_values(
            per_token(self.token_frame, self.layer_frame, "v_hat"),
            per_token(self.token_frame, self.layer_frame, "s_sampled"))

    def _others(self) -> list[str]:
        """Teachers to compare the selected one with: the real ones first, then the controls."""
        info = self.opd.info
        ordered = info.non_control + [t for t in info.teacher_names if t not in info.non_control]
        return [t for t in ordered if t != self.opd.teacher]

    def _other(self) -> str | None:
        """The diff layer's second teacher: kept while it differs from the selected one."""
        names = self._others()
        if self.other_teacher not in names:
            self.other_teacher = names[0] if names else None
        return self.other_teacher

    def _update_title(self) -> None:
        r = self.rollout_row
        verdict = r.get("verdict") or "?"
        text = Text.assemble(
            (f" {safe_text(self.question_id)} ", "bold"), f"rollout {self.rollout}  ",
            # bold and reversed as well as coloured: NO_COLOR turned red on grey into grey on
            # grey (237 on 234), an unreadable verdict
            (f" {verdict} ", "bold reverse green" if r.get("correct") else "bold reverse red"),
            f"  {self.token_frame.height:,} tokens   layer: ", (self.layer.title, "bold"),
            f"   teacher {self.opd.teacher} / {self.opd.signal}",
        )
        if self.layer.id == "diff":
            text.append(f" vs {self.other_teacher}", "bold")
        self.query_one("#title", Static).update(text)
        self.query_one("#legend", Static).update(legend(
            self.layer, self.opd.info.non_control, self.app.no_color, self.other_teacher))
        question = Text.assemble(("Q ", "bold"), safe_text(r.get("question") or "∅", 400)
                                 .replace("\n", " ⏎ "), ("   answer ", "bold"),
                                 safe_text(r.get("final_answer") or "∅", 80))
        self.query_one("#question", Static).update(question)
        self.update_status()

    def selection_changed(self) -> None:
        """Teacher or signal changed: only the layer columns are refetched and repainted."""
        super().selection_changed()
        if not self.loaded:
            return
        lq = layers_query(self.question_id, self.rollout, self.opd.teacher, self.opd.signal,
                          self._other())
        self.queries = [self.queries[0], lq]
        tokens, layer, teachers = self.token_frame, self.layer, self.opd.info.non_control
        mono = self.app.no_color

        def fetch(cur: Any) -> tuple[pl.DataFrame, Layer, tuple[list[Style | None], list[str]]]:
            layers = lq.run(cur)
            return layers, layer, layer_paint(layer, tokens, layers, teachers, mono)

        self.load("layers", fetch, self._show_layers)

    def reload(self) -> None:
        view = self.query_one(TokenView)
        self.load_rollout(self.question_id, self.rollout, self._pos_at(view.cursor))

    def _show_layers(
        self, result: tuple[pl.DataFrame, Layer, tuple[list[Style | None], list[str]]]
    ) -> None:
        self.layer_frame, layer, paint = result
        self._show_curve()
        self.query_one(TokenView).restyle(*(paint if layer == self.layer else self._layer_paint()))
        self._update_title()

    # -- inspector ------------------------------------------------------------------------

    def _pos_at(self, index: int) -> int:
        return int(self.token_frame["pos"][index]) if self.token_frame.height else 0

    INSPECTOR_DELAY = 0.05
    """Seconds the cursor must rest before the inspector is queried: held keys stay fluid."""

    def on_token_view_cursor_moved(self, event: TokenView.CursorMoved) -> None:
        self.query_one(ValueCurve).set_cursor(event.pos)
        if self._inspector_timer is not None:
            self._inspector_timer.stop()
        self._inspector_timer = self.set_timer(self.INSPECTOR_DELAY,
                                               lambda: self._inspect(event.pos))

    def _inspect(self, index: int) -> None:
        self._inspector_timer = None
        if not self.token_frame.height or index >= self.token_frame.height:
            return
        pos = self._pos_at(index)
        q, r, teachers = self.question_id, self.rollout, self.opd.info.non_control
        self.queries = self.queries[:2] + [node_query(q, r, pos), node_scores_query(q, r, pos)]
        self.load("inspector", lambda cur: node_detail(cur, q, r, pos, teachers),
                  self._show_detail,
                  lambda e: self.query_one(Inspector).show(Text(f"error: {e}", "red")))

    def _show_detail(self, detail: NodeDetail) -> None:
        self.detail = detail
        self.query_one(Inspector).show(self._detail_renderable(detail))

    def _detail_renderable(self, detail: NodeDetail, whole: bool = False) -> RenderableType:
        """The inspector's rendering at its width; `whole`: unsplit, names in full (copies)."""
        info = self.opd.info
        width = None if whole else (self.query_one(Inspector).scrollable_content_region.width
                                    or None)
        return node_renderable(detail, info.non_control, self.show_texts, info.rules,
                               info.levels, self.opd.teacher, self.opd.signal, width)

    # -- actions --------------------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        view = self.query_one(TokenView)
        view.move_to(view.cursor + delta)

    @property
    def zoomed(self) -> bool:
        return self.query_one("#split").has_class("zoom")

    def _scroll_inspector(self, lines: int) -> None:
        inspector = self.query_one(Inspector)  # from the target: held keys add up in one frame
        inspector.scroll_to(y=inspector.scroll_target_y + lines, animate=False)

    def action_line(self, delta: int) -> None:
        """Up / down: token lines; with the inspector zoomed (z), its lines."""
        if self.zoomed:
            self._scroll_inspector(delta)
        else:
            self.query_one(TokenView).move_lines(delta)

    def action_page(self, delta: int) -> None:
        if self.zoomed:
            self._scroll_inspector(delta * max(self.query_one(Inspector).size.height - 1, 1))
            return
        view = self.query_one(TokenView)
        view.move_lines(delta * view.page_lines)

    def action_first(self) -> None:
        self.query_one(TokenView).move_to(0)

    def action_last(self) -> None:
        self.query_one(TokenView).move_to(self.token_frame.height - 1)

    def significant_indices(self) -> list[int]:
        return list(self.query_one(TokenView).paint.significant)

    def action_significant(self, direction: int) -> None:
        view = self.query_one(TokenView)
        target = view.next_significant(direction)
        if target is None:
            self.notify("no further significant token for this teacher/signal", timeout=2)
        else:
            view.move_to(target)

    def action_rollout_step(self, delta: int) -> None:
        key = self.opd.step_rollout(self.question_id, self.rollout, delta)
        if key is None:
            self.notify("no further rollout", timeout=2)
            return
        self.load_rollout(*key)

    def action_layer(self, delta: int) -> None:
        self.layer_index = (self.layer_index + delta) % len(LAYERS)
        if self.loaded:
            self.query_one(TokenView).restyle(*self._layer_paint())
            self._update_title()

    def action_toggle_continuations(self) -> None:
        self.show_texts = not self.show_texts
        if self.detail is not None:
            self._show_detail(self.detail)

    def action_toggle_curve(self) -> None:
        self.query_one(ValueCurve).toggle_class("hidden")

    def action_zoom(self) -> None:
        """The inspector alone, for its teacher rows at 80x24 (← → still step through the
        tokens, ↑ ↓ PgUp PgDn scroll it); again: tokens and inspector."""
        self.query_one("#split").toggle_class("zoom")
        self.query_one(TokenView).focus()
        if self.detail is not None:
            self.call_after_refresh(self._show_detail, self.detail)

    def action_other_teacher(self) -> None:
        """D: the diff layer's second teacher steps through the others (and shows the layer)."""
        names = self._others()
        if not names:
            self.notify("no second teacher to compare with", timeout=2)
            return
        current = self._other()
        self.other_teacher = names[(names.index(current) + 1) % len(names)] if (
            current in names) else names[0]
        self.layer_index = next(i for i, layer in enumerate(LAYERS) if layer.id == "diff")
        self.notify(f"diff layer: {self.opd.teacher} - {self.other_teacher}", timeout=2)
        self.selection_changed()

    def details_text(self) -> str:
        """The inspector's content as plain text, for the clipboard (Y)."""
        if self.detail is None:
            return ""
        console = Console(width=160, record=True, no_color=True, file=io.StringIO())
        console.print(self._detail_renderable(self.detail, whole=True))
        head = f"{self.question_id} rollout {self.rollout} pos {self.detail.pos}\n"
        return head + console.export_text(styles=False)

    def action_copy_details(self) -> None:
        from opd_tui.clipboard import copy

        text = self.details_text()
        if not text:
            self.notify("no token details yet", timeout=2)
            return
        copy(self.app, text, "token details")

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.add_class("visible")
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter: jump to the first match and hand the keys back to the tokens, where n / N
        step through the matches (vim / less style)."""
        self.search_text = event.value or self.search_text
        self.find_next(self.search_text)
        self.close_overlay()

    def action_match(self, direction: int) -> None:
        """n / N: next / previous search match; without a search, the significant tokens."""
        if not self.search_text:
            self.action_significant(direction)
        elif direction > 0:
            self.find_next(self.search_text)
        else:
            self.find_previous(self.search_text)

    def find_next(self, needle: str) -> bool:
        """Move to the next token whose text (or a span starting in it) matches; wraps."""
        if not needle or not self._text_offsets:
            return False
        view = self.query_one(TokenView)
        start = self._text_offsets[view.cursor] + 1
        hit = self._full_text.find(needle.lower(), start)
        if hit < 0:
            hit = self._full_text.find(needle.lower())
        return self._land(hit, needle)

    def find_previous(self, needle: str) -> bool:
        """Move to the previous match, a span starting before the cursor token; wraps."""
        if not needle or not self._text_offsets:
            return False
        view = self.query_one(TokenView)
        end = self._text_offsets[view.cursor]
        hit = self._full_text.rfind(needle.lower(), 0, end + len(needle) - 1)
        if hit < 0 or hit >= end:
            hit = self._full_text.rfind(needle.lower())
        return self._land(hit, needle)

    def _land(self, hit: int, needle: str) -> bool:
        if hit < 0:
            self.notify(f"not found: {needle}", timeout=2)
            return False
        self.query_one(TokenView).move_to(bisect_right(self._text_offsets, hit) - 1)
        return True

    def close_overlay(self) -> bool:
        """Esc/q while searching closes the search box instead of leaving the screen."""
        search = self.query_one("#search", Input)
        if search.has_class("visible"):
            search.remove_class("visible")
            self.query_one(TokenView).focus()
            return True
        return False

    def action_prompts(self) -> None:
        query = teacher_prompts_query(self.question_id, self.rollout)
        generated = contexts_query(self.question_id)

        def show(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
            prompts, contexts = frames
            body = Text()
            for row in prompts.iter_rows(named=True):
                scope = f", rollout {self.rollout}" if row["per_rollout"] else ""
                if row["prompt"] is None:
                    body.append(f"── {row['teacher']}{scope}: no context (no other rollout of "
                                "the kind): its values are NULL here\n\n", "bold")
                    continue
                body.append(f"── {row['teacher']} ({row['n_prompt_tokens']} tokens{scope})\n",
                            "bold")
                body.append(safe_text(row["prompt"]) + "\n\n")
            for row in contexts.iter_rows(named=True):
                body.append(f"── context {{{row['context']}}} written by {row['model']} "
                            f"({row['n_tokens']} tokens)\n", "bold")
                body.append(safe_text(row["text"]) + "\n\n")
            self.app.push_screen(TextModal("teacher prompts", body, query.inline()))

        self.load("prompts", lambda cur: (query.run(cur), generated.run(cur)), show)

    def action_bookmark(self) -> None:
        """m: bookmark the token under the cursor, or remove its bookmark (kept in the user's
        data directory, never in the run)."""
        from opd_tui.bookmarks import BookmarkError, BookmarkStore

        view = self.query_one(TokenView)
        if not self.loaded or not 0 <= view.cursor < self.token_frame.height:
            self.notify("no token to bookmark here", timeout=2)
            return
        pos = self._pos_at(view.cursor)
        text = self.token_frame["token_text"][view.cursor] or ""
        store = BookmarkStore()
        try:
            added = store.toggle(self.opd.db.path, self.question_id, self.rollout, pos, text)
        except BookmarkError as e:
            self.notify(str(e), severity="error", timeout=6)
            return
        finally:
            if store.warning:
                self.notify(store.warning, severity="warning", timeout=8)
        where = f"{self.question_id} r{self.rollout} pos {pos}"
        self.notify(f"bookmarked {where}" if added else f"bookmark removed: {where}", timeout=2)
