"""The eval set: structured references, and bad rows refused with their file and line before anything runs."""

from __future__ import annotations

import json

import pytest
from distill.evaluator.evalset import load_eval_set

from distill.errors import UserError


def write(path, rows):
    path.write_text(
        "".join(
            (row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows
        ),
        encoding="utf-8",
    )
    return path


def test_rows_become_items_with_the_students_instruction(tmp_path):
    path = write(
        tmp_path / "eval.jsonl",
        [
            {"id": "a", "input": "合同正文一", "reference": json.dumps({"甲方": "X"}, ensure_ascii=False)},
            {"id": "b", "input": "text two", "reference": {"甲方": "Y", "金额": 5}},
            {"id": "c", "input": "free text", "reference": "a plain answer"},
        ],
    )
    items = load_eval_set(path, "抽取合同要素")
    assert [item.id for item in items] == ["a", "b", "c"]
    assert items[0].instruction == "抽取合同要素\n\n合同正文一"  # engine.prompts.build_instruction
    assert items[0].structured == {"甲方": "X"}
    assert items[1].structured == {"甲方": "Y", "金额": 5} and json.loads(items[1].reference)["金额"] == 5
    assert items[2].structured is None
    assert [item.id for item in load_eval_set(path, "", limit=2)] == ["a", "b"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": "a", "input": "x"}], "eval.jsonl:1: reference: missing or empty"),
        (
            [{"id": "a", "input": "x", "reference": "r"}, {"id": "b", "input": "y", "reference": "  "}],
            "eval.jsonl:2: reference: missing or empty",
        ),
        ([{"id": "a", "reference": "r"}], "eval.jsonl:1: input: missing or empty"),
        (
            [{"id": "a", "input": "x", "reference": "r"}, {"id": "a", "input": "y", "reference": "r"}],
            "eval.jsonl:2: id: 'a' already used on line 1",
        ),
        (['{"id": "a", "input": '], "eval.jsonl:1: not valid JSON"),
        (["[1, 2]"], "eval.jsonl:1: each line must be a JSON object"),
        ([], "eval.jsonl: the eval set is empty"),
    ],
)
def test_bad_rows_are_refused_with_file_and_line(tmp_path, rows, message):
    path = write(tmp_path / "eval.jsonl", rows)
    with pytest.raises(UserError) as caught:
        load_eval_set(path, "")
    assert message in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="eval set not found"):
        load_eval_set(tmp_path / "nope.jsonl", "")
