"""The toy task: the checker against brute-force arithmetic, free tokens, the planted mistake,
and the character tokenizer's exact round trip."""

from __future__ import annotations

import random

import pytest
from transformers import AutoTokenizer

from engine.toy.task import (
    FAMILIES,
    NEUTRAL_STYLE,
    Problem,
    Style,
    check_solution,
    decisive_index,
    final_number,
    has_misconception_case,
    is_correct,
    parse_question,
    random_problem,
    render,
    solve,
)
from engine.toy.tokenizer import CHARS, EOS_ID, build_tokenizer, decode, encode


def _all_two_digit() -> list[Problem]:
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    return [Problem("add", a, b) for a, b in pairs] + [
        Problem("sub", a, b) for a, b in pairs if a >= b
    ]


def test_checker_agrees_with_brute_force_on_every_two_digit_problem() -> None:
    rng = random.Random(0)
    for p in _all_two_digit():
        sol = solve(p, rng)
        expected = p.a + p.b if p.family == "add" else p.a - p.b  # brute force, not p.answer
        assert final_number(sol) == expected
        assert check_solution(p.question, sol)


def test_checker_on_random_problems_of_every_length() -> None:
    rng = random.Random(1)
    for _ in range(3000):
        p = random_problem(rng)
        sol = solve(p, rng, Style(p_comma=rng.random(), p_swap=rng.random()))
        assert eval(p.question) == final_number(sol)  # noqa: S307 - digits and +/- only
        assert check_solution(p.question, sol)
        assert parse_question(p.question) == p


def test_checker_rejects_any_changed_digit_in_a_step() -> None:
    """The steps bind the answer: changing one computed digit breaks the solution."""
    rng = random.Random(2)
    for _ in range(300):
        p = random_problem(rng)
        sol = solve(p, rng)
        body = sol.split(" #### ")[0]
        i = rng.choice([k for k, c in enumerate(body) if c.isdigit()])
        wrong = sol[:i] + str((int(sol[i]) + 1) % 10) + sol[i + 1 :]
        assert not check_solution(p.question, wrong)


def test_free_tokens_never_change_the_outcome() -> None:
    rng = random.Random(3)
    p = Problem("add", 4759, 8367)
    texts = {solve(p, rng, Style(p_comma=0.5, p_swap=0.5)) for _ in range(200)}
    assert len(texts) > 20  # separators and operand order really vary
    assert all(check_solution(p.question, t) and final_number(t) == 13126 for t in texts)


def test_misconception_is_the_forgotten_borrow_and_its_decisive_token() -> None:
    p = Problem("sub", 503, 178)
    seps, swaps = (";", ";"), (False,) * 3
    good, bad = render(p, seps, swaps), render(p, seps, swaps, misconception=True)
    assert good == "13-8=5;10-7-1=2;5-1-1=3 #### 325"
    assert bad == "13-8=5;10-7=3;5-1-1=3 #### 335"
    i = decisive_index(p, seps, swaps)
    assert good[:i] == bad[:i] == "13-8=5;10-7" and (good[i], bad[i]) == ("-", "=")
    assert not check_solution(p.question, bad)
    assert has_misconception_case(p)
    assert not has_misconception_case(Problem("sub", 987, 123))
    assert not has_misconception_case(Problem("sub", 543, 178))  # borrows, no zero top digit
    assert not has_misconception_case(Problem("add", 999, 999))


def test_forced_misconception_cases_really_change_the_answer() -> None:
    rng = random.Random(4)
    for _ in range(200):
        p = random_problem(rng, "sub", misconception_case=True)
        bad = solve(p, rng, misconception=True)
        assert not is_correct(bad, p.answer)


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_round_trips_every_character_and_solution(tmp_path, family: str) -> None:
    build_tokenizer().save_pretrained(str(tmp_path))
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert tok.eos_token_id == EOS_ID
    for ch in CHARS:
        assert tok.decode(tok(ch)["input_ids"]) == ch
    rng = random.Random(5)
    for _ in range(50):
        p = random_problem(rng, family)
        text = f"Q:{p.question} S:{solve(p, rng, NEUTRAL_STYLE)} A:"
        ids = tok(text)["input_ids"]
        assert ids == encode(text) and len(ids) == len(text)
        assert tok.decode(ids) == decode(ids) == text


def test_unknown_character_names_the_problem() -> None:
    with pytest.raises(ValueError, match="not in the toy vocabulary"):
        encode("Q:1*2 A:")
