"""The one registry of user actions: footer, help screen and command palette are generated from it.

Each `Action` has a unique id, the keys that trigger it (Textual key names, comma separated;
only keys that survive SSH and tmux: letters, digits, punctuation, arrows, F1-F10, Enter, Esc),
a description, a scope (the screen it belongs to, or "app" for everywhere) and the Textual
action it runs. Screens take their `BINDINGS` from `bindings(scope)`.

Adding a screen is one line: give the action a `screen` ("module:Class"); the app imports it
lazily and pushes it. The SQL console registers itself like this:

    Action("app.console", "colon", "SQL console", "app", screen="opd_tui.console:ConsoleScreen"),

A screen pushed this way may call `app.open_token(question_id, rollout, pos)` to jump to a token.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    id: str
    keys: str
    description: str
    scope: str
    action: str = ""
    show: bool = True
    screen: str | None = None

    @property
    def textual_action(self) -> str:
        if self.screen is not None:
            return f"app.open_screen('{self.id}')"
        return self.action or self.id.split(".", 1)[-1]

    @property
    def key_label(self) -> str:
        return " ".join(KEY_LABELS.get(k, k) for k in self.keys.split(","))


KEY_LABELS = {
    "question_mark": "?", "slash": "/", "left_square_bracket": "[", "right_square_bracket": "]",
    "escape": "Esc", "enter": "Enter", "left": "←", "right": "→", "up": "↑", "down": "↓",
    "colon": ":", "home": "Home", "end": "End", "pageup": "PgUp", "pagedown": "PgDn",
    "ctrl+p": "^p", "f1": "F1", "left_curly_bracket": "{", "right_curly_bracket": "}",
}

ACTIONS: list[Action] = [
    # everywhere
    Action("app.help", "question_mark,f1", "Help for this view", "app", "app.help"),
    Action("app.palette", "ctrl+p", "Command palette", "app", "app.command_palette", show=False),
    Action("app.back", "q", "Back (on the Overview: quit)", "app", "app.back"),
    Action("app.escape", "escape", "Back (never quits)", "app", "app.escape", show=False),
    Action("app.show_sql", "v", "Show the SQL behind this view", "app", "app.show_sql"),
    Action("app.copy_sql", "y", "Copy this view's SQL (OSC 52)", "app", "app.copy_sql",
           show=False),
    Action("app.refresh", "r", "Reload (live run directory)", "app", "app.reload", show=False),
    Action("app.next_teacher", "t", "Next teacher", "app", "app.next_teacher"),
    Action("app.pick_teacher", "1,2,3,4,5,6,7,8,9", "Pick teacher by number", "app",
           "app.pick_teacher({key})", show=False),
    Action("app.next_signal", "s", "Next signal", "app", "app.next_signal"),
    Action("app.quit", "ctrl+q", "Quit", "app", "app.quit", show=False),
    Action("app.console", "colon", "SQL console", "app", screen="opd_tui.console:ConsoleScreen"),
    # overview
    Action("overview.questions", "enter", "Questions", "overview", "open_questions"),
    # questions
    Action("questions.open", "enter", "Open rollouts", "questions", "open_question"),
    Action("questions.sort", "o", "Sort by column (again: flip)", "questions", "sort"),
    Action("questions.filter", "f,slash", "Filter (SQL WHERE)", "questions", "filter"),
    Action("questions.first", "g", "First row", "questions", "first", show=False),
    Action("questions.last", "G", "Last row", "questions", "last", show=False),
    Action("questions.down", "j", "Row down", "questions", "cursor(1, 0)", show=False),
    Action("questions.up", "k", "Row up", "questions", "cursor(-1, 0)", show=False),
    Action("questions.left", "h", "Column left", "questions", "cursor(0, -1)", show=False),
    Action("questions.right", "l", "Column right", "questions", "cursor(0, 1)", show=False),
    # rollouts of one question
    Action("rollouts.open", "enter", "Open the rollout", "rollouts", "open_rollout"),
    Action("rollouts.down", "j", "Row down", "rollouts", "cursor(1)", show=False),
    Action("rollouts.up", "k", "Row up", "rollouts", "cursor(-1)", show=False),
    # modal screens (help, SQL, prompts)
    Action("modal.close", "q,escape", "Close", "modal", "dismiss"),
    Action("modal.copy", "y", "Copy (OSC 52)", "modal", "copy"),
    # rollout
    Action("rollout.prev_token", "left,h", "Previous token", "rollout", "move(-1)", show=False),
    Action("rollout.next_token", "right,l", "Next token", "rollout", "move(1)", show=False),
    Action("rollout.line_up", "up,k", "Line up", "rollout", "line(-1)", show=False),
    Action("rollout.line_down", "down,j", "Line down", "rollout", "line(1)", show=False),
    Action("rollout.page_up", "pageup", "Page up", "rollout", "page(-1)", show=False),
    Action("rollout.page_down", "pagedown", "Page down", "rollout", "page(1)", show=False),
    Action("rollout.first", "g,home", "First token", "rollout", "first", show=False),
    Action("rollout.last", "G,end", "Last token", "rollout", "last", show=False),
    Action("rollout.next_significant", "right_curly_bracket", "Next significant token",
           "rollout", "significant(1)"),
    Action("rollout.prev_significant", "left_curly_bracket", "Previous significant token",
           "rollout", "significant(-1)", show=False),
    Action("rollout.next_match", "n", "Next search match (no search: next significant)",
           "rollout", "match(1)"),
    Action("rollout.prev_match", "N", "Previous search match", "rollout", "match(-1)",
           show=False),
    Action("rollout.next_rollout", "right_square_bracket", "Next rollout", "rollout",
           "rollout_step(1)"),
    Action("rollout.prev_rollout", "left_square_bracket", "Previous rollout", "rollout",
           "rollout_step(-1)", show=False),
    Action("rollout.layer", "c", "Cycle colour layer", "rollout", "layer(1)"),
    Action("rollout.layer_back", "C", "Previous colour layer", "rollout", "layer(-1)",
           show=False),
    Action("rollout.search", "slash", "Search token text", "rollout", "search"),
    Action("rollout.continuations", "e", "Show continuation texts", "rollout",
           "toggle_continuations"),
    Action("rollout.prompts", "p", "Teacher prompts", "rollout", "prompts"),
    Action("rollout.curve", "w", "Value curve on/off", "rollout", "toggle_curve"),
    Action("rollout.zoom", "z", "Inspector full screen (again: back)", "rollout", "zoom"),
    Action("rollout.other_teacher", "D", "Diff layer: next second teacher", "rollout",
           "other_teacher"),
    Action("rollout.copy_details", "Y", "Copy the token's details (OSC 52)", "rollout",
           "copy_details"),
]


# search across rollouts, bookmarks (app-wide keys hidden from the footer: help and palette)
ACTIONS += [
    Action("app.search", "F", "Search text across all rollouts", "app", show=False,
           screen="opd_tui.screens.search:SearchScreen"),
    Action("app.bookmarks", "B", "Bookmarks of this run", "app", show=False,
           screen="opd_tui.screens.bookmarks:BookmarksScreen"),
    Action("rollout.bookmark", "m", "Bookmark the token (again: remove it)", "rollout",
           "bookmark", show=False),
    Action("search.open", "enter", "Open the rollout at its first match", "search", "open_hit"),
    Action("search.edit", "slash", "Edit the search text", "search", "edit"),
    Action("search.down", "j", "Row down", "search", "cursor(1)", show=False),
    Action("search.up", "k", "Row up", "search", "cursor(-1)", show=False),
    Action("bookmarks.open", "enter", "Jump to the bookmarked token", "bookmarks", "open_mark"),
    Action("bookmarks.delete", "d", "Delete the bookmark", "bookmarks", "delete_mark"),
    Action("bookmarks.down", "j", "Row down", "bookmarks", "cursor(1)", show=False),
    Action("bookmarks.up", "k", "Row up", "bookmarks", "cursor(-1)", show=False),
]


def register(action: Action) -> None:
    """Add an action at run time (before the screens are created); ids must be unique."""
    if any(a.id == action.id for a in ACTIONS):
        raise ValueError(f"action id {action.id!r} is already registered")
    ACTIONS.append(action)


def for_scope(scope: str) -> list[Action]:
    """Actions available in a screen: its own, then the app-wide ones."""
    return [a for a in ACTIONS if a.scope == scope] + [
        a for a in ACTIONS if a.scope == "app" and scope not in ("app", "modal")
    ]


def bindings(scope: str) -> list[Binding]:
    """Textual bindings of a scope; an action containing `{key}` gets one binding per key."""
    out: list[Binding] = []
    for a in ACTIONS:
        if a.scope != scope:
            continue
        if "{key}" in a.textual_action:
            out += [Binding(k, a.textual_action.format(key=k), a.description, show=a.show,
                            id=f"{a.id}.{k}") for k in a.keys.split(",")]
        else:
            out.append(Binding(a.keys, a.textual_action, a.description, show=a.show, id=a.id))
    return out


def by_id(action_id: str) -> Action:
    for a in ACTIONS:
        if a.id == action_id:
            return a
    raise KeyError(action_id)
