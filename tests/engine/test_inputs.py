"""Input validation before spending, and lazy streaming."""

from __future__ import annotations

import json

import pytest
from distill.engine.inputs import derive_id, iter_inputs, validate_inputs

from distill.errors import UserError


def write(tmp_path, lines, name="in.jsonl"):
    path = tmp_path / name
    path.write_text(
        "".join(
            line if isinstance(line, str) else json.dumps(line, ensure_ascii=False) + "\n" for line in lines
        ),
        encoding="utf-8",
    )
    return path


def test_rows_and_offsets_stream_in_order(tmp_path):
    path = write(tmp_path, [{"id": "a", "input": "合同一"}, "\n", {"id": 7, "input": "second"}])
    info = validate_inputs(path)
    assert info.rows == 2 and not info.derived_ids
    rows = list(iter_inputs(path))
    assert [(row.id, row.text, row.line) for row in rows] == [("a", "合同一", 1), ("7", "second", 3)]
    # Resuming at a row's offset starts exactly there.
    resumed = list(iter_inputs(path, start=(rows[1].offset, rows[1].line), derive_ids=False))
    assert [(row.id, row.line) for row in resumed] == [("7", 3)]


def test_ids_are_derived_from_the_text_when_absent(tmp_path):
    path = write(tmp_path, [{"input": "one"}, {"input": "two"}])
    assert validate_inputs(path).derived_ids
    assert [row.id for row in iter_inputs(path)] == [derive_id("one"), derive_id("two")]
    assert derive_id("one") == derive_id("one") and len(derive_id("one")) == 16


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"id": "a", "input": "x"}, '{"id": "b", "input": \n'], r"in.jsonl:2: \(line\): malformed JSON"),
        ([{"id": "a", "text": "x"}], r"in.jsonl:1: input: missing field"),
        ([{"id": "a", "input": "  "}], r"in.jsonl:1: input: is empty"),
        ([{"id": "a", "input": 3}], r"in.jsonl:1: input: must be a string"),
        ([{"id": "a", "input": "x"}, {"input": "y"}], r"in.jsonl:2: id: missing field"),
        ([{"input": "x"}, {"id": "b", "input": "y"}], r"in.jsonl:2: id: present here but absent"),
        ([{"id": "", "input": "x"}], r"in.jsonl:1: id: is empty"),
        ([{"id": "a", "input": "x"}, "[1, 2]\n"], r"in.jsonl:2: \(line\): expected a JSON object"),
        (
            [{"id": "a", "input": "x"}, {"id": "b", "input": "y"}, {"id": "a", "input": "z"}],
            r"in.jsonl:3: id: duplicate id 'a', first seen on line 1",
        ),
        ([{"input": "same"}, {"input": "same"}], r"in.jsonl:2: input: duplicate input text"),
        (["\n", "  \n"], r"in.jsonl: input file has no rows"),
        ([], r"in.jsonl: input file has no rows"),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path, lines, message):
    with pytest.raises(UserError, match=message):
        validate_inputs(write(tmp_path, lines))


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="input file not found"):
        validate_inputs(tmp_path / "nope.jsonl")


def test_configurable_field_names(tmp_path):
    path = write(tmp_path, [{"key": "k1", "question": "q1"}])
    assert [(row.id, row.text) for row in iter_inputs(path, "key", "question")] == [("k1", "q1")]
