"""Sanitising model output and the colour/format helpers (no terminal needed)."""

from __future__ import annotations

from rich.cells import cell_len

from opd_tui.render import (
    MAX_TOKEN_CELLS,
    compact,
    diverging,
    fmt_fixed,
    fmt_interval,
    marker_glyph,
    quantile_scale,
    safe_text,
    sparkline,
    visible_token,
)


def test_whitespace_and_specials_are_visible() -> None:
    assert visible_token(" a\n") == "␣a⏎"
    assert visible_token("\t") == "⇥"
    assert visible_token("<|endoftext|>", is_special=True) == "<|endoftext|>"
    assert visible_token("eos", is_special=True) == "<eos>"
    assert visible_token("") == "∅"


def test_escape_sequences_and_controls_are_neutralised() -> None:
    shown = visible_token("\x1b[31mred\x1b]52;c;AAAA\x07\x9b2J", max_cells=100)
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert shown.startswith("␛[31mred␛]52;c;AAAA␇") and shown.endswith("\\x9b2J")
    assert all(ch.isprintable() for ch in shown)
    assert visible_token("a\u202eb") == "a\\u202eb"  # bidi override shown, not obeyed
    assert visible_token("\u200b") == "\\u200b"


def test_markup_is_plain_text() -> None:
    assert visible_token("[bold red]x[/]") == "[bold␣red]x[/]"


def test_partial_utf8_shown_from_bytes() -> None:
    assert visible_token("\ufffd", b"\xe2\x82") == "\\xe2\\x82"
    assert visible_token("é\ufffd", "é".encode() + b"\xf0") == "é\\xf0"


def test_long_and_wide_tokens_are_bounded() -> None:
    shown = visible_token("y" * 10_000)
    assert cell_len(shown) == MAX_TOKEN_CELLS and shown.endswith("…")
    wide = visible_token("漢" * 100)
    assert cell_len(wide) <= MAX_TOKEN_CELLS


def test_safe_text_keeps_lines_and_caps_length() -> None:
    assert safe_text("a\x1b[2J\nb") == "a␛[2J\nb"
    assert safe_text("x" * 50, max_chars=10).startswith("x" * 10 + "… [40 more")
    assert safe_text(None) == "∅"


def test_number_formats() -> None:
    assert compact(0.4213) == "+.42"
    assert compact(-0.0712) == "-.071"
    assert compact(0.0013) == "+.0013"
    assert compact(1.5) == "+1.50"
    assert compact(None) == "∅"
    assert fmt_interval(0.4, 0.3, 0.52) == "+.40[.30,.52]"
    assert fmt_interval(-0.2, -0.3, -0.1) == "-.20[-.30,-.10]"
    # headline tables: fixed precision, so columns of edges line up (edge lies in [-2, 2])
    assert fmt_fixed(0.0499, -0.0212, 0.1095) == "+.05[-.02,.11]"
    assert fmt_fixed(-1.0682, -1.1646, -0.9474) == "-1.07[-1.16,-.95]"
    assert fmt_fixed(0.0, 0.0, 0.0) == "0[0,0]"
    assert fmt_fixed(-0.004, -0.04, 0.3, digits=1) == ".0[.0,.3]"  # no sign on a rounded 0
    assert fmt_fixed(None) == "∅" and fmt_fixed(0.123) == "+.12"


def test_scales_and_markers() -> None:
    assert diverging(None) is None
    pos, neg = diverging(0.9), diverging(-0.9)
    assert pos is not None and neg is not None and pos.bgcolor != neg.bgcolor
    assert marker_glyph("helps") == "⁺" and marker_glyph("hurts") == "⁻"
    assert marker_glyph("neutral") == "" and marker_glyph(None) == ""
    values = [float(i) for i in range(100)] + [1e9]
    assert quantile_scale(values) == 95.0  # the outlier does not set the scale
    assert sparkline([0, 1, 8]) == " ▁█"
    assert sparkline([0, 0]) == "  "


def test_abbreviations_stay_distinct_and_fit() -> None:
    import random

    from rich.cells import cell_len

    from opd_tui.render import abbreviate

    demo = ["strong", "specialist", "self_answer", "self_solution", "self_strong_sol",
            "self_contrast"]
    short = abbreviate(demo, 8)
    assert short["strong"] == "strong" and short["self_solution"] == "s_solut…"
    rng = random.Random(0)
    for _ in range(300):  # random name sets, many sharing long prefixes
        names = list({rng.choice(["self_", "ctrl_", "teacher_", ""])
                      + rng.choice(["solution", "solutions", "sol", "answer_long_name"])
                      + rng.choice(["", "_a", "_b", "2"]) for _ in range(rng.randint(1, 8))})
        width = rng.randint(4, 12)
        out = abbreviate(names, width)
        assert len(set(out.values())) == len(names), (names, out)
        assert all(cell_len(v) <= width for v in out.values()), (width, out)
        assert all(out[n] == n for n in names if cell_len(n) <= width and
                   list(out.values()).count(n) == 1)
