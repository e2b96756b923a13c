"""Question sets: JSONL or Parquet rows normalised to `question`, `solution`, `final_answer`.

Every preset maps its source columns onto the same normalised fields (method.md, Objects), so
teachers' templates and verifiers never see a dataset's own spelling. GSM8K's `answer` is a
whole worked solution ending in `#### N`: it is split so that a "self + answer" context can use
the final number alone.

Ids. A row's own id (`id`, or the preset's id column) is kept. A row without one gets
`q-<12 hex digits of sha1(question text + NUL + final answer)>`: a content hash, not the line
index, so ids survive reordering, filtering or appending rows to the file and a resumed run
still finds its parts. A repeated identical row gets `-2`, `-3`, ... appended in file order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NORMALISED_FIELDS = ("question", "solution", "final_answer", "id", "family")
MC_LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Question:
    """One question with its reference, as every stage of the engine sees it."""

    id: str
    idx: int
    question: str
    solution: str | None
    final_answer: str | None
    family: str | None
    fields: Mapping[str, Any] = field(hash=False)
    """Every field of the normalised row (original columns + normalised ones), for templates."""


class DatasetError(Exception):
    """A dataset the engine cannot use; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class _Preset:
    mapping: Mapping[str, str]  # normalised field -> source column
    required: tuple[str, ...]
    normalise: Callable[[dict[str, Any], str], None] | None = None  # (row, where) -> in place


def _split_gsm8k(row: dict[str, Any], where: str) -> None:
    """`answer` = worked solution + `#### N` -> solution = the worked text, final_answer = N."""
    answer = row["final_answer"]
    if "####" not in answer:
        raise DatasetError(
            f"{where}: GSM8K answer has no '#### N' final line; use preset = \"plain\" with "
            f"fields mapping if this file is not GSM8K-formatted"
        )
    worked, _, number = answer.rpartition("####")
    row["solution"] = worked.strip()
    row["final_answer"] = number.strip().replace(",", "")
    if not row["final_answer"]:
        raise DatasetError(f"{where}: GSM8K answer has an empty '####' final line")


def _format_mc(row: dict[str, Any], where: str) -> None:
    """Options (list or letter-keyed dict) are appended to the question as 'A. ...' lines."""
    options = row.get("options")
    if isinstance(options, Mapping):
        letters = [str(k).strip().upper() for k in options]
        texts = [str(v) for v in options.values()]
    elif isinstance(options, list | tuple):
        letters = list(MC_LETTERS[: len(options)])
        texts = [str(v) for v in options]
    else:
        raise DatasetError(
            f"{where}: multiple-choice 'options' must be a list or a dict of letter -> text, "
            f"got {type(options).__name__}"
        )
    if not 2 <= len(texts) <= len(MC_LETTERS) or any(x not in MC_LETTERS for x in letters):
        raise DatasetError(
            f"{where}: multiple-choice questions need 2 to {len(MC_LETTERS)} options lettered "
            f"A-J, got {letters}"
        )
    answer = row["final_answer"]
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(letters):
        letter = letters[answer]  # MMLU-style 0-based index
    else:
        letter = str(answer).strip().strip("()").upper()
    if letter not in letters:
        raise DatasetError(
            f"{where}: answer {answer!r} is not one of the option letters {letters} "
            f"(or a 0-based option index)"
        )
    row["stem"] = row["question"]
    row["options_text"] = "\n".join(f"{x}. {t}" for x, t in zip(letters, texts, strict=True))
    row["question"] = f"{row['question']}\n{row['options_text']}"
    row["final_answer"] = letter


PRESETS: dict[str, _Preset] = {
    "plain": _Preset(
        {"question": "question", "solution": "solution", "final_answer": "final_answer",
         "id": "id", "family": "family"},
        ("question", "final_answer"),
    ),
    "gsm8k": _Preset(
        {"question": "question", "final_answer": "answer", "id": "id", "family": "family"},
        ("question", "final_answer"),
        _split_gsm8k,
    ),
    "math500": _Preset(
        {"question": "problem", "solution": "solution", "final_answer": "answer",
         "id": "unique_id", "family": "subject"},
        ("question", "solution", "final_answer"),
    ),
    "mc": _Preset(
        {"question": "question", "final_answer": "answer", "id": "id", "family": "family",
         "options": "options"},
        ("question", "final_answer", "options"),
        _format_mc,
    ),
}


def load_questions(
    path: Path,
    *,
    preset: str = "plain",
    fields: Mapping[str, str] | None = None,
    limit: int = 0,
) -> list[Question]:
    """Read, normalise and validate a whole question set; keep the first `limit` (0 = all).

    `fields` maps a normalised field (question, solution, final_answer, id, family, options) to
    the dataset's column and overrides the preset's mapping. The whole file is validated even
    with a limit, so a run never discovers a bad row half-way through a sweep.
    """
    path = Path(path)
    if preset not in PRESETS:
        raise DatasetError(
            f"{path}: unknown dataset preset {preset!r}; use one of {', '.join(PRESETS)}"
        )
    if limit < 0:
        raise DatasetError(f"{path}: limit must be >= 0 (0 = all questions), got {limit}")
    spec = PRESETS[preset]
    mapping = dict(spec.mapping)
    for target, source in (fields or {}).items():
        if target not in (*NORMALISED_FIELDS, "options"):
            raise DatasetError(
                f"{path}: [data] fields maps unknown field {target!r}; the targets are "
                f"{', '.join((*NORMALISED_FIELDS, 'options'))}"
            )
        mapping[target] = source
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found; check [data] path")

    questions: list[Question] = []
    seen: dict[str, str] = {}  # id -> where it was first seen
    hash_count: dict[str, int] = {}
    for idx, (where, raw) in enumerate(_read_rows(path)):
        row = _normalise(raw, mapping, spec, where, preset)
        qid = row.get("id")
        if qid is None:
            qid = _content_id(row["question"], row.get("final_answer"))
            hash_count[qid] = hash_count.get(qid, 0) + 1
            if hash_count[qid] > 1:
                qid = f"{qid}-{hash_count[qid]}"
        if qid in seen:
            raise DatasetError(
                f"{where}: duplicate question id {qid!r} (first at {seen[qid]}); ids must be "
                f"unique: fix the file or map another column with [data] fields = {{id = ...}}"
            )
        seen[qid] = where
        row["id"] = qid
        questions.append(
            Question(
                id=qid, idx=idx, question=row["question"], solution=row.get("solution"),
                final_answer=row.get("final_answer"), family=row.get("family"), fields=row,
            )
        )
    if not questions:
        raise DatasetError(f"{path}: the dataset has no questions; check [data] path")
    return questions[:limit] if limit else questions


def _content_id(question: str, final_answer: str | None) -> str:
    digest = hashlib.sha1(f"{question}\0{final_answer or ''}".encode()).hexdigest()
    return f"q-{digest[:12]}"


def _normalise(
    raw: dict[str, Any], mapping: Mapping[str, str], spec: _Preset, where: str, preset: str
) -> dict[str, Any]:
    """Original columns + normalised fields; text fields become strings, empty ones None."""
    row: dict[str, Any] = dict(raw)
    for target, source in mapping.items():
        value = raw.get(source)
        if target in spec.required and (value is None or value == ""):
            present = ", ".join(sorted(raw)) or "none"
            raise DatasetError(
                f"{where}: missing required field {target!r} (column {source!r}) for preset "
                f"{preset!r}; columns present: {present}. Fix the row or map the column with "
                f"[data] fields = {{{target} = \"<column>\"}}"
            )
        if target == "options":
            row[target] = value
        elif value is None or value == "":
            row[target] = None
        elif target == "final_answer" and preset == "mc":
            row[target] = value  # may be a 0-based index, resolved by _format_mc
        else:
            row[target] = str(value)
    if spec.normalise is not None:
        spec.normalise(row, where)
    return row


def _read_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location for messages, row) pairs; JSONL by extension, Parquet by extension."""
    suffixes = "".join(path.suffixes[-1:]).lower()
    if suffixes in (".jsonl", ".json", ".ndjson"):
        yield from _read_jsonl(path)
    elif suffixes in (".parquet", ".pq"):
        yield from _read_parquet(path)
    else:
        raise DatasetError(
            f"{path}: unknown dataset format {path.suffix!r}; use a .jsonl or .parquet file"
        )


MAX_LINE_BYTES = 8 << 20
"""Longest JSONL line accepted (8 MiB): a real question with its worked solution is a few KB; a
line far longer is a broken file, and reading it whole once cost 24 GB of RAM."""


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as lines:
        lineno = 0
        while True:
            raw = lines.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            lineno += 1
            where = f"{path}:{lineno}"
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DatasetError(
                    f"{where}: line longer than {MAX_LINE_BYTES >> 20} MiB; each line must be one "
                    "JSON object of a question (is this really a JSONL question file?)")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DatasetError(
                    f"{where}: not valid UTF-8 (byte {e.start + 1} of the line: "
                    f"{raw[e.start:e.start + 4]!r}); save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(
                    f"{where}: malformed JSON ({e.msg} at column {e.colno}); each line must be "
                    f"one JSON object"
                ) from None
            if not isinstance(row, dict):
                raise DatasetError(
                    f"{where}: expected a JSON object per line, got {type(row).__name__}"
                )
            yield where, row


def _read_parquet(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow.parquet as pq  # lazy: verifier worker processes import this module

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise DatasetError(f"{path}: cannot read Parquet file ({e})") from None
    for i, row in enumerate(table.to_pylist(), start=1):
        yield f"{path}: row {i}", row

