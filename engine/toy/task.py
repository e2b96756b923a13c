"""The toy reasoning task: column addition and column subtraction written out step by step.

Why this shape (docs/toy-prototype.md lessons): the steps *bind* the answer (the final number is
assembled from the step results, so a wrong step really lowers success), the written form leaves
*free* tokens (step separator ';' or ',', operand order in addition) that never change the outcome,
and subtraction has a planted, systematic misconception: in a column whose top digit is 0, the
borrow taken from it is never paid back ("13-8=5;10-7=3" instead of "13-8=5;10-7-1=2"). It is
rare in random problems (about 2% of them), so a strong generalist trained on data that carries
the same habit still scores well over 95%, while a specialist drilled on exactly that case does
not share it. The first character where the buggy and the correct solution differ is the
*decisive* token of a question.

Solution grammar (columns from the least significant digit up, steps joined by ';' or ','):
  add step: x+y[+1]=s          s = x+y+carry_in, written in full (1 or 2 digits)
  sub step: [1]t-b[-1]=r       the '1' prefix marks a borrow taken, '-1' the borrow paid back
  tail:     " #### <answer>"   the engine's numeric verifier reads the number after '####'
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

FAMILIES = ("add", "sub")
"""add: addition with carries (easy for every model); sub: subtraction with borrows (hard)."""

SEPARATORS = (";", ",")
ANSWER_MARK = "####"


@dataclass(frozen=True)
class Style:
    """Probabilities of the free choices; they never change the outcome, only the wording."""

    p_comma: float = 0.5  # separator ',' instead of ';'
    p_swap: float = 0.5  # addition operands written y+x instead of x+y

    def draw(self, rng: random.Random, n_steps: int) -> tuple[tuple[str, ...], tuple[bool, ...]]:
        """One concrete wording: a separator after every step but the last, a swap per step."""
        seps = tuple(SEPARATORS[rng.random() < self.p_comma] for _ in range(n_steps - 1))
        swaps = tuple(rng.random() < self.p_swap for _ in range(n_steps))
        return seps, swaps


NEUTRAL_STYLE = Style()


@dataclass(frozen=True)
class Problem:
    family: str
    a: int
    b: int

    @property
    def question(self) -> str:
        return f"{self.a}{'+' if self.family == 'add' else '-'}{self.b}"

    @property
    def answer(self) -> int:
        return self.a + self.b if self.family == "add" else self.a - self.b

    @property
    def n_digits(self) -> int:
        return len(str(self.a))

    def columns(self) -> list[tuple[int, int]]:
        """(digit of a, digit of b) per column, least significant first; b is zero-padded."""
        sa, sb = str(self.a), str(self.b).rjust(self.n_digits, "0")
        return [(int(x), int(y)) for x, y in zip(reversed(sa), reversed(sb), strict=True)]


def parse_question(question: str) -> Problem:
    m = re.fullmatch(r"(\d+)([+-])(\d+)", question)
    if m is None:
        raise ValueError(f"not a toy question: {question!r}")
    return Problem("add" if m.group(2) == "+" else "sub", int(m.group(1)), int(m.group(3)))


def _add_steps(p: Problem, swaps: tuple[bool, ...]) -> tuple[list[str], list[int]]:
    steps, results, carry = [], [], 0
    for (x, y), swap in zip(p.columns(), swaps, strict=True):
        s = x + y + carry
        u, v = (y, x) if swap else (x, y)
        steps.append(f"{u}+{v}{'+1' if carry else ''}={s}")
        results.append(s)
        carry = s // 10
    return steps, results


def _sub_steps(p: Problem, *, forget_borrow: bool) -> tuple[list[str], list[int]]:
    """Correct column subtraction, or the misconception: under a top digit 0 the borrow is taken
    but never paid back."""
    steps, results, borrow = [], [], 0
    for t, b in p.columns():
        paid = 0 if forget_borrow and t == 0 else borrow
        need = t - paid - b
        top = f"1{t}" if need < 0 else f"{t}"
        r = need + 10 if need < 0 else need
        steps.append(f"{top}-{b}{'-1' if paid else ''}={r}")
        results.append(r)
        borrow = int(need < 0)
    return steps, results


def _assemble(family: str, results: list[int]) -> int:
    """The answer as the steps dictate it: last digit of each column, the top column in full."""
    if family == "add":
        return int(str(results[-1]) + "".join(str(r % 10) for r in reversed(results[:-1])))
    return int("".join(str(r) for r in reversed(results)))


def render(
    p: Problem,
    seps: tuple[str, ...],
    swaps: tuple[bool, ...],
    *,
    misconception: bool = False,
) -> str:
    """The worked solution in one fixed wording; `misconception` applies the forgotten borrow."""
    if p.family == "add":
        steps, results = _add_steps(p, swaps)
    else:
        steps, results = _sub_steps(p, forget_borrow=misconception)
    body = steps[0] + "".join(sep + step for sep, step in zip(seps, steps[1:], strict=True))
    return f"{body} {ANSWER_MARK} {_assemble(p.family, results)}"


def solve(p: Problem, rng: random.Random, style: Style = NEUTRAL_STYLE, **kw: bool) -> str:
    seps, swaps = style.draw(rng, p.n_digits)
    return render(p, seps, swaps, **kw)


def decisive_index(p: Problem, seps: tuple[str, ...], swaps: tuple[bool, ...]) -> int | None:
    """Index of the first character where the misconception departs from the correct solution."""
    good = render(p, seps, swaps)
    bad = render(p, seps, swaps, misconception=True)
    if good == bad:
        return None
    return next(i for i, (x, y) in enumerate(zip(good, bad, strict=False)) if x != y)


def has_misconception_case(p: Problem) -> bool:
    return p.family == "sub" and decisive_index(p, (";",) * (p.n_digits - 1), ()) is not None


# --- sampling problems -------------------------------------------------------------------------


def random_problem(
    rng: random.Random,
    family: str | None = None,
    *,
    digits: tuple[int, ...] = (2, 3, 4),
    misconception_case: bool | None = None,
) -> Problem:
    """Both operands have the same number of digits; subtraction keeps a >= b (no negatives).

    `misconception_case` forces (True) or excludes (False) a borrow that must be paid back.
    """
    family = family or rng.choice(FAMILIES)
    while True:
        n = rng.choice(digits)
        lo, hi = 10 ** (n - 1), 10**n - 1
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if family == "sub" and a < b:
            a, b = b, a
        p = Problem(family, a, b)
        if misconception_case is None or has_misconception_case(p) == misconception_case:
            return p


# --- checking ----------------------------------------------------------------------------------

_ADD_STEP = re.compile(r"(\d)\+(\d)(\+1)?=(\d{1,2})")
_SUB_STEP = re.compile(r"(1?\d)-(\d)(-1)?=(\d)")
_FINAL = re.compile(r"####\s*(-?\d+)")


def final_number(text: str) -> int | None:
    """The number after the last '####' (what the engine's numeric verifier reads)."""
    found = _FINAL.findall(text)
    return int(found[-1]) if found else None


def is_correct(completion: str, final_answer: int | str) -> bool:
    """Outcome check used for accuracies: only the final number counts, as in the engine."""
    got = final_number(completion)
    return got is not None and got == int(final_answer)


def check_solution(question: str, solution: str) -> bool:
    """Every step is right for its column, carries/borrows are carried, and the answer assembles.

    Pure Python and independent of `render`: it recomputes each column from the question.
    """
    p = parse_question(question)
    body, mark, tail = solution.partition(f" {ANSWER_MARK} ")
    if not mark or not tail.isdigit():
        return False
    steps = re.split(r"[;,]", body)
    cols = p.columns()
    if len(steps) != len(cols):
        return False
    results: list[int] = []
    carry = 0
    for step, (x, y) in zip(steps, cols, strict=True):
        if p.family == "add":
            m = _ADD_STEP.fullmatch(step)
            if m is None or sorted((int(m[1]), int(m[2]))) != sorted((x, y)):
                return False
            if bool(m[3]) != bool(carry) or int(m[4]) != x + y + carry:
                return False
            results.append(int(m[4]))
            carry = int(m[4]) // 10
        else:
            m = _SUB_STEP.fullmatch(step)
            if m is None or int(m[2]) != y or bool(m[3]) != bool(carry):
                return False
            borrow_taken = x - carry - y < 0
            if int(m[1]) != x + 10 * borrow_taken or int(m[4]) != int(m[1]) - y - carry:
                return False
            results.append(int(m[4]))
            carry = int(borrow_taken)
    digits = str(results[-1]) + "".join(str(r % 10) for r in reversed(results[:-1]))
    return int(tail) == int(digits) == p.answer


# --- JSONL rows --------------------------------------------------------------------------------


def question_row(p: Problem, qid: str, rng: random.Random, style: Style = NEUTRAL_STYLE) -> dict:
    return {
        "id": qid,
        "family": p.family,
        "question": p.question,
        "solution": solve(p, rng, style),
        "final_answer": str(p.answer),
        "misconception_case": has_misconception_case(p),
    }


def write_jsonl(rows: Iterable[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def read_jsonl(path: Path) -> Iterator[dict]:
    with path.open() as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
