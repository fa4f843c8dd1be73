"""Reading engine records and exports: every bad input is a UserError naming file, line and field."""

from __future__ import annotations

import json

import pytest
from distill.trainer.data import check_no_overlap, content_id, fingerprint, load_examples, split_validation

from distill.errors import UserError


def test_records_answer_and_thinking_targets(records, tmp_path):
    path = records(tmp_path / "records.jsonl", 3)
    answer = load_examples([str(path)], "answer")
    thinking = load_examples([str(path)], "thinking")
    assert answer.kinds == ["records"] and len(answer.examples) == 3
    assert answer.examples[1].target == json.dumps(
        {"甲方": "A1公司", "乙方": "B公司", "金额": 10}, ensure_ascii=False
    )
    assert (
        thinking.examples[1].target.startswith("【思考】") and "\n\n【答案】" in thinking.examples[1].target
    )
    assert answer.examples[2].id == "c2" and answer.examples[2].where == f"{path}:3"


def test_run_directory_reads_accepted_shards_and_skips_a_torn_tail(records, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records(run / "accepted-00000.jsonl", 2)
    records(run / "accepted-00001.jsonl", 2, start=2)
    records(run / "rejected-00000.jsonl", 5, start=10)  # never trained on
    with (run / "accepted-00001.jsonl").open("a") as handle:
        handle.write('{"id": "c9", "instruc')  # a record being written when the run stopped
    data = load_examples([str(run)], "answer")
    assert [ex.id for ex in data.examples] == ["c0", "c1", "c2", "c3"]
    assert data.torn_lines == 1


def test_alpaca_and_sharegpt_exports(tmp_path):
    alpaca = tmp_path / "a.jsonl"
    alpaca.write_text(
        json.dumps(
            {"instruction": "总结", "input": "一段文字", "output": "摘要", "id": "x1"}, ensure_ascii=False
        )
        + "\n"
        + json.dumps({"instruction": "翻译", "input": "", "output": "译文"})
        + "\n"
    )
    sharegpt = tmp_path / "s.jsonl"
    sharegpt.write_text(
        json.dumps(
            {"conversations": [{"from": "human", "value": "问"}, {"from": "gpt", "value": "答"}], "id": 7}
        )
        + "\n"
    )
    rows = load_examples([str(alpaca), str(sharegpt)], "answer").examples
    assert rows[0].instruction == "总结\n一段文字" and rows[0].target == "摘要" and rows[0].id == "x1"
    assert rows[1].instruction == "翻译" and rows[1].id == content_id("翻译")
    assert (rows[2].instruction, rows[2].target, rows[2].id) == ("问", "答", "7")


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "no examples found"),
        ('{"id": "c1", "instruction": "x", "output": "y"}\nnot json\n', ":2: not valid JSON"),
        ("[1, 2]\n", ":1: each line must be a JSON object"),
        (
            '{"id": "c1", "sample_index": 0, "instruction": "x", "full_output": "y"}\n',
            ":1: output: missing field",
        ),
        (
            '{"id": "c1", "sample_index": 0, "instruction": 5, "output": "y"}\n',
            ":1: instruction: must be a string",
        ),
        ('{"id": "c1", "sample_index": 0, "instruction": "  ", "output": "y"}\n', ":1: instruction: empty"),
        (
            '{"sample_index": 0, "thinking": "t", "instruction": "x", "output": "y"}\n',
            ":1: id: missing field",
        ),
        ('{"prompt": "x", "completion": "y"}\n', ":1: instruction: missing field"),
        (
            '{"conversations": [{"from": "gpt", "value": "a"}]}\n',
            ":1: conversations: expected one human turn",
        ),
    ],
)
def test_bad_data_names_file_line_and_field(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_examples([str(path)], "answer")
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_missing_paths_and_empty_run_directory(tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        load_examples([str(tmp_path / "nope.jsonl")], "answer")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no accepted-\\*.jsonl shards"):
        load_examples([str(tmp_path / "empty")], "answer")


def test_export_format_contradicting_the_setting_is_refused(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(
        json.dumps({"instruction": "x", "input": "", "output": "【思考】t\n\n【答案】y"}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(UserError, match="train with --format thinking"):
        load_examples([str(path)], "answer")
    assert load_examples([str(path)], "thinking").examples[0].target.startswith("【思考】")


def test_validation_split_keeps_all_samples_of_an_id_together():
    from distill.trainer.data import Example

    examples = [Example(f"id{i // 3}", f"q{i}", "a", f"f:{i}") for i in range(60)]
    train, val = split_validation(examples, 0.1, seed=1)
    assert len({ex.id for ex in val}) == 2 and len(val) == 6
    assert not {ex.id for ex in train} & {ex.id for ex in val}
    assert split_validation(examples, 0.1, seed=1) == (train, val)
    assert split_validation(examples, 0.0, seed=1) == (examples, [])


def test_overlapping_eval_set_is_refused_by_id_or_by_text(records, tmp_path):
    train = load_examples([str(records(tmp_path / "t.jsonl", 5))], "answer").examples
    same_id = tmp_path / "e1.jsonl"
    same_id.write_text(json.dumps({"id": "c3", "instruction": "unrelated", "output": "z"}) + "\n")
    with pytest.raises(UserError, match=r"e1.jsonl:1: id: eval example 'c3' overlaps the training data"):
        check_no_overlap(train, load_examples([str(same_id)], "answer", role="eval_file").examples)
    same_text = tmp_path / "e2.jsonl"
    same_text.write_text(
        json.dumps(
            {"id": "other", "instruction": "  " + train[0].instruction + " ", "output": "z"},
            ensure_ascii=False,
        )
        + "\n"
    )
    with pytest.raises(UserError, match="overlaps the training data"):
        check_no_overlap(train, load_examples([str(same_text)], "answer", role="eval_file").examples)
    fresh = tmp_path / "e3.jsonl"
    fresh.write_text(json.dumps({"id": "new", "instruction": "a new contract"}) + "\n")
    check_no_overlap(
        train, load_examples([str(fresh)], "answer", role="eval_file", need_target=False).examples
    )


def test_fingerprint_follows_content_not_order():
    from distill.trainer.data import Example

    a, b = Example("1", "q", "x", "f:1"), Example("2", "r", "y", "f:2")
    assert fingerprint([a, b], "answer") == fingerprint([b, a], "answer")
    assert fingerprint([a, b], "answer") != fingerprint([a, b], "thinking")
    assert fingerprint([a], "answer") != fingerprint([Example("1", "q", "x!", "f:1")], "answer")
