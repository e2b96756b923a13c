"""Answer extraction and normalisation: pure string functions behind the builtin verifiers.

Conventions follow the common evaluation harnesses (lm-eval's GSM8K strict/flexible filters,
Hendrycks' last-\\boxed extraction with Minerva-style normalisation) so that "correct" here means
what it means in published numbers.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

REL_TOL = 1e-6
ABS_TOL = 1e-9
"""Numeric equality tolerance: answers are decimals written by a model, not floats."""

_NUMBER = r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)"
_AFTER_HASHES = re.compile(rf"^\s*\$?\s*({_NUMBER}(?:\s*/\s*{_NUMBER})?)")
_GSM8K_STRICT = re.compile(r"####\s*\$?\s*(-?[0-9][0-9.,]*|-?\.[0-9]+)")
_GSM8K_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")  # lm-eval flexible-extract


def parse_number(text: str) -> float | None:
    """'1,234' / '$5.00' / '-3.' / '3/4' / '50%' -> float; None when it is not a plain number."""
    s = text.strip().rstrip(".").replace(",", "").replace("$", "").replace(" ", "")
    s = s.removesuffix("\\%").removesuffix("%")
    if not s:
        return None
    try:
        if "/" in s:
            num, den = s.split("/")
            return float(Fraction(num) / Fraction(den))
        value = float(s)
    except (ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) else None


def numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def after_last_hashes(text: str) -> str | None:
    """The number right after the last '####' ('#### $1,234.' -> '1,234'), else None."""
    head, sep, tail = text.rpartition("####")
    if not sep:
        return None
    m = _AFTER_HASHES.match(tail)
    return m.group(1) if m else None


def gsm8k_extract(text: str) -> tuple[str | None, str]:
    """(answer, rule): strict '#### N' (the last one), else the flexible last number.

    The rule is recorded because a strict miss with a flexible hit is a format error, not a
    reasoning error.
    """
    strict = _GSM8K_STRICT.findall(text)
    if strict:
        return strict[-1], "strict"
    flexible = [a or b for a, b in _GSM8K_FLEXIBLE.findall(text)]
    flexible = [f for f in flexible if any(c.isdigit() for c in f)]
    if flexible:
        return flexible[-1], "flexible"
    return None, "none"


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) with balanced braces; '\\boxed 5' too."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.index("{", start) if "{" in text[start:] else -1
    cmd_end = start + (6 if text.startswith("\\boxed", start) else 5)
    if i < 0 or text[cmd_end:i].strip():
        m = re.match(r"\s+([^\s$]+)", text[cmd_end:])  # '\boxed 5' form
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced: the completion was cut off inside the box


_LATEX_DROP = (r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\displaystyle", "^{\\circ}",
               "^\\circ", r"\%", "%", r"\$")


def normalise_latex(answer: str) -> str:
    """Canonical spelling of a short LaTeX answer, for string comparison."""
    s = answer.strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s.strip("$")
    s = re.sub(r"\\text\{\s*([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:mathrm|mathbf)\{([^{}]*)\}", r"\1", s)
    for tok in _LATEX_DROP:
        s = s.replace(tok, "")
    s = s.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)  # \frac12 -> \frac{1}{2}
    s = re.sub(r"\s+", "", s).rstrip(".")
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s[1:-1]
    return s


_FRAC = re.compile(r"^(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}$")


def latex_number(answer: str) -> float | None:
    """Value of a normalised answer that is a plain number or a \\frac of numbers."""
    m = _FRAC.match(answer)
    if m:
        sign, num, den = m.groups()
        n, d = parse_number(num), parse_number(den)
        if n is None or d is None or d == 0:
            return None
        return (-1 if sign else 1) * n / d
    if re.fullmatch(r"-?[\d,]*\.?\d+(?:/\d+)?", answer):
        return parse_number(answer)
    return None


_LETTER = r"(I(?!\s+[a-z])|[A-HJ])(?![A-Za-z'’])"  # 'I think ...' is not option I
_MC_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("answer is", re.compile(rf"(?i:answer)\s*(?:(?i:is)\s*)?:?\s*\(?{_LETTER}")),
    ("####", re.compile(rf"####\s*\(?{_LETTER}")),
    ("boxed", re.compile(r"\\boxed\{\s*(?:\\text\{)?\(?([A-J])\)?\}?\s*\}")),
    ("last letter", re.compile(r"(?:^|[\s:(\[*])\(?([A-J])\)?[.)\]*]*\s*$")),
)


def mc_extract(text: str) -> tuple[str | None, str]:
    """(letter, rule): the first rule that matches, taking its last match in the text."""
    for rule, pattern in _MC_RULES:
        found = pattern.findall(text)
        if found:
            return found[-1], rule
    return None, "none"
