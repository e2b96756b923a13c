"""Dataset presets and every dataset error, on tiny JSONL and Parquet files written here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.inputs.datasets import DatasetError, load_questions


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 1,231 more. How many?",
     "answer": "He has 3 + 1231 = <<3+1231=1234>>1234 apples.\n#### 1,234"},
    {"question": "A pen costs $5. Two pens?", "answer": "2 * 5 = 10\n#### 10"},
]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_gsm8k_splits_worked_solution_from_final_number(tmp_path: Path, fmt: str) -> None:
    writer = write_jsonl if fmt == "jsonl" else write_parquet
    qs = load_questions(writer(tmp_path / f"g.{fmt}", GSM8K_ROWS), preset="gsm8k")
    assert [q.final_answer for q in qs] == ["1234", "10"]
    assert qs[0].solution == "He has 3 + 1231 = <<3+1231=1234>>1234 apples."
    assert "####" not in qs[0].solution
    assert qs[0].fields["answer"] == GSM8K_ROWS[0]["answer"]  # raw column kept for templates
    assert [q.idx for q in qs] == [0, 1]
    # No id column: content hash of question + final answer, independent of position.
    expected = hashlib.sha1(f"{GSM8K_ROWS[1]['question']}\0" "10".encode()).hexdigest()[:12]
    assert qs[1].id == f"q-{expected}"
    reordered = load_questions(writer(tmp_path / f"r.{fmt}", GSM8K_ROWS[::-1]), preset="gsm8k")
    assert {q.id for q in reordered} == {q.id for q in qs}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_math500_preset_maps_problem_subject_unique_id(tmp_path: Path, fmt: str) -> None:
    rows = [{"problem": "Compute $1/2+0$.", "solution": "It is $\\boxed{\\frac12}$.",
             "answer": "\\frac{1}{2}", "subject": "Algebra", "level": 1,
             "unique_id": "test/algebra/1.json"}]
    writer = write_jsonl if fmt == "jsonl" else write_parquet
    (q,) = load_questions(writer(tmp_path / f"m.{fmt}", rows), preset="math500")
    assert (q.id, q.question, q.final_answer, q.family) == (
        "test/algebra/1.json", "Compute $1/2+0$.", "\\frac{1}{2}", "Algebra")
    assert q.solution == rows[0]["solution"]
    assert q.fields["level"] == 1 and q.fields["family"] == "Algebra"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_mc_preset_letters_options_in_question(tmp_path: Path, fmt: str) -> None:
    rows = [{"id": "a", "question": "Capital of France?", "options": ["Rome", "Paris", "Oslo"],
             "answer": "B"},
            {"id": "b", "question": "2+2?", "options": ["3", "4"], "answer": "b"}]
    writer = write_jsonl if fmt == "jsonl" else write_parquet
    qa, qb = load_questions(writer(tmp_path / f"c.{fmt}", rows), preset="mc")
    assert qa.question == "Capital of France?\nA. Rome\nB. Paris\nC. Oslo"
    assert qa.final_answer == "B" and qa.fields["stem"] == "Capital of France?"
    assert qb.final_answer == "B"  # letters are upper-cased


def test_mc_answer_as_zero_based_index(tmp_path: Path) -> None:
    rows = [{"question": "2+2?", "options": ["3", "4"], "answer": 1}]  # MMLU style
    (q,) = load_questions(write_jsonl(tmp_path / "i.jsonl", rows), preset="mc")
    assert q.final_answer == "B"


def test_mc_dict_options(tmp_path: Path) -> None:
    rows = [{"question": "Pick", "options": {"A": "x", "B": "y", "C": "z"}, "answer": "(c)"}]
    (q,) = load_questions(write_jsonl(tmp_path / "d.jsonl", rows), preset="mc")
    assert q.question.endswith("A. x\nB. y\nC. z") and q.final_answer == "C"


def test_plain_preset_and_explicit_mapping(tmp_path: Path) -> None:
    rows = [{"uid": 7, "prompt": "2+3?", "gold": 5, "topic": "add"}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    (q,) = load_questions(path, fields={"question": "prompt", "final_answer": "gold",
                                        "id": "uid", "family": "topic"})
    assert (q.id, q.question, q.final_answer, q.family, q.solution) == (
        "7", "2+3?", "5", "add", None)
    # The mapping overrides a preset's column names too.
    (q2,) = load_questions(path, preset="math500", fields={
        "question": "prompt", "final_answer": "gold", "solution": "prompt", "id": "uid"})
    assert q2.final_answer == "5" and q2.solution == "2+3?"


def test_limit_keeps_first_rows_and_ids_are_stable(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}", "final_answer": str(i)} for i in range(5)]
    path = write_jsonl(tmp_path / "l.jsonl", rows)
    full = load_questions(path)
    two = load_questions(path, limit=2)
    assert [q.id for q in two] == [q.id for q in full[:2]]
    assert len({q.id for q in full}) == 5


def test_identical_rows_without_ids_get_occurrence_suffix(tmp_path: Path) -> None:
    row = {"question": "same", "final_answer": "1"}
    qs = load_questions(write_jsonl(tmp_path / "s.jsonl", [row, row]))
    assert qs[1].id == qs[0].id + "-2"


def error_of(path: Path, **kw: Any) -> str:
    with pytest.raises(DatasetError) as e:
        load_questions(path, **kw)
    return str(e.value)


def test_malformed_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a", "final_answer": "1"}\n\n{"question": "b", \n')
    msg = error_of(path)
    assert f"{path}:3" in msg and "malformed JSON" in msg


def test_non_object_line(tmp_path: Path) -> None:
    msg = error_of(write_jsonl(tmp_path / "n.jsonl", [[1, 2]]))
    assert ":1" in msg and "JSON object" in msg


def test_missing_required_field_names_line_and_fix(tmp_path: Path) -> None:
    rows = [{"question": "a", "final_answer": "1"}, {"question": "b"}]
    msg = error_of(write_jsonl(tmp_path / "m.jsonl", rows))
    assert "m.jsonl:2" in msg and "'final_answer'" in msg and "fields" in msg


def test_missing_field_in_parquet_names_row(tmp_path: Path) -> None:
    rows = [{"problem": "p", "solution": "s", "answer": "1"},
            {"problem": "q", "solution": None, "answer": "2"}]
    msg = error_of(write_parquet(tmp_path / "m.parquet", rows), preset="math500")
    assert "row 2" in msg and "'solution'" in msg


def test_duplicate_ids(tmp_path: Path) -> None:
    rows = [{"id": "x", "question": "a", "final_answer": "1"},
            {"id": "y", "question": "b", "final_answer": "1"},
            {"id": "x", "question": "c", "final_answer": "2"}]
    msg = error_of(write_jsonl(tmp_path / "d.jsonl", rows))
    assert "d.jsonl:3" in msg and "duplicate question id 'x'" in msg and "d.jsonl:1" in msg


def test_gsm8k_without_hashes(tmp_path: Path) -> None:
    rows = [{"question": "a", "answer": "the answer is 4"}]
    msg = error_of(write_jsonl(tmp_path / "g.jsonl", rows), preset="gsm8k")
    assert "g.jsonl:1" in msg and "####" in msg


def test_mc_answer_not_an_option(tmp_path: Path) -> None:
    rows = [{"question": "a", "options": ["x", "y"], "answer": "D"}]
    msg = error_of(write_jsonl(tmp_path / "c.jsonl", rows), preset="mc")
    assert "c.jsonl:1" in msg and "'D'" in msg


def test_empty_set_and_config_mistakes(tmp_path: Path) -> None:
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n\n")
    assert "no questions" in error_of(empty)
    ok = write_jsonl(tmp_path / "ok.jsonl", [{"question": "a", "final_answer": "1"}])
    assert "unknown dataset preset 'gsm'" in error_of(ok, preset="gsm")
    assert "unknown field 'answer'" in error_of(ok, fields={"answer": "x"})
    assert "limit" in error_of(ok, limit=-1)
    assert "not found" in error_of(tmp_path / "missing.jsonl")
    csv = tmp_path / "q.csv"
    csv.write_text("question\n")
    assert ".parquet" in error_of(csv)
    broken = tmp_path / "b.parquet"
    broken.write_bytes(b"not parquet")
    assert "cannot read Parquet" in error_of(broken)
