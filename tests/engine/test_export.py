"""Export to alpaca/sharegpt + dataset_info.json, loaded for real by `datasets`."""

from __future__ import annotations

import json

import pytest
from distill.engine.export import export_dataset

from distill.errors import UserError
from tests.engine.run_dirs import accepted, lines


def make_run(tmp_path):
    run_dir = tmp_path / "contracts run"
    run_dir.mkdir()
    records = [
        accepted(
            f"c{i}",
            instruction=f"抽取合同要素\n\n合同{i}",
            thinking="先看甲乙方",
            output=f"甲方A,乙方B,金额{i}",
        )
        for i in range(5)
    ]
    (run_dir / "accepted-00000.jsonl").write_text(lines(*records[:3]))
    (run_dir / "accepted-00001.jsonl").write_text(lines(*records[3:]))
    (run_dir / "rejected-00000.jsonl").write_text(
        lines({**records[0], "id": "bad", "reject_reason": "format"})
    )
    (run_dir / "summary.json").write_text(json.dumps({"status": "complete", "done": 6, "total": 6}))
    return run_dir


def test_both_formats_load_in_datasets(tmp_path):
    import datasets

    run_dir = make_run(tmp_path)
    out = tmp_path / "data"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"existing": {"file_name": "x.json"}}))
    result = export_dataset(run_dir, out)
    assert result["name"] == "contracts_run" and result["rows"] == 5
    alpaca = datasets.load_dataset("json", data_files=str(out / "contracts_run_alpaca.jsonl"), split="train")
    assert alpaca.num_rows == 5 and alpaca[0]["instruction"] == "抽取合同要素\n\n合同0"
    assert alpaca[0]["input"] == "" and alpaca[4]["output"] == "甲方A,乙方B,金额4"
    sharegpt = datasets.load_dataset(
        "json", data_files=str(out / "contracts_run_sharegpt.jsonl"), split="train"
    )
    assert sharegpt[1]["conversations"] == [
        {"from": "human", "value": "抽取合同要素\n\n合同1"},
        {"from": "gpt", "value": "甲方A,乙方B,金额1"},
    ]
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["existing"] == {"file_name": "x.json"}  # kept
    assert info["contracts_run_alpaca"] == {
        "file_name": "contracts_run_alpaca.jsonl",
        "formatting": "alpaca",
        "columns": {"prompt": "instruction", "query": "input", "response": "output"},
    }
    assert info["contracts_run_sharegpt"]["tags"] == {
        "role_tag": "from",
        "content_tag": "value",
        "user_tag": "human",
        "assistant_tag": "gpt",
    }
    assert info["contracts_run_sharegpt"]["columns"] == {"messages": "conversations"}


def test_with_thinking_trains_on_full_output(tmp_path):
    out = tmp_path / "data"
    export_dataset(make_run(tmp_path), out, formats=("alpaca",), with_thinking=True, name="cot")
    rows = [json.loads(line) for line in (out / "cot_alpaca.jsonl").read_text().splitlines()]
    assert rows[2]["output"] == "【思考】先看甲乙方\n\n【答案】甲方A,乙方B,金额2"
    assert not (out / "cot_sharegpt.jsonl").exists()
    assert list(json.loads((out / "dataset_info.json").read_text())) == ["cot_alpaca"]


def test_errors(tmp_path):
    with pytest.raises(UserError, match="--run-dir: no such directory"):
        export_dataset(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no accepted"):
        export_dataset(tmp_path / "empty", tmp_path / "out")


class _KeepEven:
    """A selection (what `distill review`'s decisions are to an export): keeps even rows, fails at ``fail_at``."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.fail_at, self.kept = fail_at, 0

    def __call__(self, record):
        if record["id"] == self.fail_at:
            raise RuntimeError("stopped half way")
        if int(record["id"][1:]) % 2:
            return None
        self.kept += 1
        return {**record, "output": record["output"] + " (checked)"}

    def summary(self):
        return {"kept": self.kept}


def test_a_selection_decides_each_row_and_a_failure_leaves_the_earlier_files(tmp_path):
    run_dir, out = make_run(tmp_path), tmp_path / "data"
    result = export_dataset(run_dir, out, formats=("alpaca",), review=_KeepEven())
    rows = [json.loads(line) for line in (out / "contracts_run_alpaca.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == ["c0", "c2", "c4"] and rows[1]["output"].endswith("(checked)")
    assert result["rows"] == 3 and result["review"] == {"kept": 3}
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir())
    with pytest.raises(RuntimeError):
        export_dataset(run_dir, out, review=_KeepEven(fail_at="c3"))
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before  # no half file, no temporary
