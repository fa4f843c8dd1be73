"""A student trained and served with its own short instruction (task.student_instruction): the exported
training files carry it, the distilled student is evaluated with it, and the teacher, the judge and the base
student keep the task's full description."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from distill.engine.prompts import build_instruction

from distill.endpoint import Endpoint
from distill.errors import UserError
from distill.pipeline import stage_evaluate, stage_export
from distill.pipeline.config import load_run_config
from distill.pipeline.context import StageContext
from distill.pipeline.contract_task import TASK_DESCRIPTION
from distill.pipeline.markers import StageRecord
from distill.pipeline.services import Services
from distill.pipeline.stage_export import restate_instructions
from distill.pipeline.task import task_view

SHORT = "抽取合同要素,输出JSON。"


def _context(tmp_path: Path, text: str) -> StageContext:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_run_config(path)
    services = Services(loaded.config, tmp_path / "run", contextlib.ExitStack())
    return StageContext(loaded, tmp_path / "run", services, task_view(loaded))


def test_exported_instructions_are_restated_with_the_students(tmp_path):
    alpaca, sharegpt = tmp_path / "a.jsonl", tmp_path / "s.jsonl"
    contract = "借款合同\n{甲方}:周桂英"  # braces and newlines in the input stay as they are
    full = build_instruction(TASK_DESCRIPTION, contract)
    alpaca.write_text(json.dumps({"instruction": full, "input": "", "output": "{}"}) + "\n", encoding="utf-8")
    conversation = [{"from": "human", "value": full}, {"from": "gpt", "value": "{}"}]
    sharegpt.write_text(json.dumps({"conversations": conversation}) + "\n", encoding="utf-8")
    for path in (alpaca, sharegpt):
        restate_instructions(path, TASK_DESCRIPTION, SHORT)
    short = f"{SHORT}\n\n{contract}"
    assert json.loads(alpaca.read_text(encoding="utf-8"))["instruction"] == short
    rows = json.loads(sharegpt.read_text(encoding="utf-8"))["conversations"]
    assert rows[0]["value"] == short and rows[1]["value"] == "{}"


def test_an_instruction_built_from_another_task_is_an_error_and_the_file_stays(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(
        json.dumps({"instruction": "another task\n\ntext", "output": "{}"}) + "\n", encoding="utf-8"
    )
    with pytest.raises(UserError, match="does not start with the task description"):
        restate_instructions(path, TASK_DESCRIPTION, "short")
    assert "another task" in path.read_text(encoding="utf-8")
    assert list(tmp_path.iterdir()) == [path]  # no staging file left behind


def test_a_blank_student_instruction_is_refused_at_its_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task:\n  kind: contracts\n  student_instruction: '  '\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"run.yaml:\d+.*student_instruction is empty"):
        load_run_config(path)


def test_only_the_distilled_student_is_evaluated_with_the_short_instruction(tmp_path):
    context = _context(tmp_path, f"task:\n  student_instruction: {SHORT}\n")
    context.records["references"] = StageRecord("references", "r", {"eval": str(tmp_path / "eval.jsonl")}, 0)
    context.records["generate"] = StageRecord("generate", "g", {}, 0)
    endpoint = Endpoint(base_url="http://127.0.0.1:9/v1", model="m")
    config = stage_evaluate.eval_config(context, endpoint, endpoint, str(tmp_path / "adapter"))
    assert config.task == TASK_DESCRIPTION  # the teacher and the judge
    assert {student.name: student.task for student in config.students} == {"distilled": SHORT, "base": None}


def test_the_student_instruction_is_part_of_the_training_data_key(tmp_path):
    (tmp_path / "plain").mkdir()
    short = _context(tmp_path, f"task:\n  student_instruction: {SHORT}\n")
    plain = _context(tmp_path / "plain", "task:\n  kind: contracts\n")
    for context in (short, plain):
        context.records["generate"] = StageRecord("generate", "g", {}, 0)
    assert stage_export.key(short) != stage_export.key(plain)


def test_the_report_says_which_instruction_the_student_got(tmp_path):
    from distill.pipeline.stage_report import _task_lines

    lines = "\n".join(_task_lines(_context(tmp_path, f"task:\n  student_instruction: {SHORT}\n"), {}))
    assert f"own instruction: “{SHORT}”" in lines
    (tmp_path / "plain").mkdir()
    assert "own instruction" not in "\n".join(_task_lines(_context(tmp_path / "plain", "task: {}\n"), {}))
