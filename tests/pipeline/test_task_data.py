"""The user's task: its files are checked before anything runs, with errors that name the file and line;
the held-out split is stable; the bundled examples load."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from distill.errors import UserError
from distill.pipeline.config import load_run_config
from distill.pipeline.task import task_view
from distill.pipeline.task_data import FROM_EVAL_SET, FROM_INPUTS, FROM_TEACHER, in_eval_split, load_task_data

REPO = Path(__file__).resolve().parents[2]
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "price": {"type": "number"},
        "date": {"type": "string", "format": "date"},
    },
    "required": ["name", "price"],
}


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def _rows(n: int, reference: bool = True) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"key": f"r{i}", "text": f"Item {i} costs {i}.50 dollars"}
        if reference:
            row["gold"] = {"name": f"Item {i}", "price": i + 0.5}
        rows.append(row)
    return rows


def _config(tmp_path: Path, task: str, **files: list) -> Path:
    for name, rows in files.items():
        _jsonl(tmp_path / name, rows)
    path = tmp_path / "run.yaml"
    path.write_text(
        "task:\n  kind: file\n  name: items\n  id_field: key\n  input_field: text\n  reference_field: gold\n"
        "  instruction: Extract the item as JSON.\n" + task,
        encoding="utf-8",
    )
    return path


def _load(path: Path):
    loaded = load_run_config(path)
    view = task_view(loaded)
    return loaded, view, load_task_data(loaded.config.task, view.schema)


def test_eval_split_is_stable_and_disjoint(tmp_path):
    path = _config(tmp_path, "  inputs: in.jsonl\n  eval_split: 0.25\n", **{"in.jsonl": _rows(40)})
    _, _, data = _load(path)
    assert data.references == FROM_INPUTS
    assert {r.id for r in data.train}.isdisjoint({r.id for r in data.eval})
    assert len(data.train) + len(data.eval) == 40 and 4 <= len(data.eval) <= 18
    assert [r.id for r in data.eval] == [f"r{i}" for i in range(40) if in_eval_split(f"r{i}", 0.25)]
    assert [r.id for r in _load(path)[2].eval] == [r.id for r in data.eval]  # the same split on every rerun


def test_without_references_the_teacher_gives_them(tmp_path):
    path = _config(
        tmp_path, "  inputs: in.jsonl\n  eval_split: 0.25\n", **{"in.jsonl": _rows(20, reference=False)}
    )
    assert _load(path)[2].references == FROM_TEACHER
    path = _config(
        tmp_path,
        "  inputs: in.jsonl\n  eval_set: held.jsonl\n",
        **{"in.jsonl": _rows(6), "held.jsonl": [{"key": "h1", "text": "Other item", "gold": "x"}]},
    )
    assert _load(path)[2].references == FROM_EVAL_SET


@pytest.mark.parametrize(
    ("task", "files", "message"),
    [
        ("  inputs: missing.jsonl\n  eval_split: 0.2\n", {}, r"missing\.jsonl: inputs file not found"),
        (
            "  inputs: in.jsonl\n  eval_split: 0.2\n",
            {"in.jsonl": [*_rows(3), {"key": "r9", "body": "no text field"}]},
            r"in\.jsonl:4: text: missing or empty; .*this row's fields: body, key",
        ),
        (
            "  inputs: in.jsonl\n  eval_set: held.jsonl\n",
            {"in.jsonl": _rows(5), "held.jsonl": [{"key": "r2", "text": "new text", "gold": "x"}]},
            r"held\.jsonl:1: id: 'r2' is also a training input \(.*in\.jsonl:3\)",
        ),
        (
            "  inputs: in.jsonl\n  eval_set: held.jsonl\n",
            {
                "in.jsonl": _rows(5),
                "held.jsonl": [{"key": "h1", "text": "  item 3 COSTS 3.50 dollars ", "gold": "x"}],
            },
            r"held\.jsonl:1: input: the same text is a training input \(.*in\.jsonl:4\)",
        ),
        (
            "  inputs: in.jsonl\n  eval_set: held.jsonl\n",
            {
                "in.jsonl": _rows(5),
                "held.jsonl": [{"key": "h1", "text": "a", "gold": "x"}, {"key": "h2", "text": "b"}],
            },
            r"held\.jsonl:2: gold: missing, while other held-out rows have one",
        ),
        (
            "  inputs: in.jsonl\n  eval_split: 0.01\n",
            {"in.jsonl": _rows(3)},
            r"eval_split 0\.01 of 3 inputs leaves no held-out row",
        ),
        (
            "  inputs: in.jsonl\n  eval_split: 0.2\n  answer_schema: schema.json\n",
            {"in.jsonl": [*_rows(2), {"key": "r7", "text": "bad", "gold": {"name": "x", "price": "cheap"}}]},
            r"in\.jsonl:3: gold: does not satisfy the answer schema: price: 'cheap' is not of type 'number'",
        ),
    ],
)
def test_bad_task_files_are_refused_naming_file_and_line(tmp_path, task, files, message):
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA, indent=2), encoding="utf-8")
    path = _config(tmp_path, task, **files)
    with pytest.raises(UserError, match=message):
        _load(path)


def test_a_schema_that_is_not_json_schema_is_refused_with_its_line(tmp_path):
    broken = json.dumps({**SCHEMA, "properties": {"name": {"type": "strin"}}}, indent=2)
    (tmp_path / "schema.json").write_text(broken, encoding="utf-8")
    path = _config(
        tmp_path,
        "  inputs: in.jsonl\n  eval_split: 0.2\n  answer_schema: schema.json\n",
        **{"in.jsonl": _rows(5)},
    )
    with pytest.raises(
        UserError, match=r"schema\.json:5: answer_schema: properties/name/type: not valid JSON Schema"
    ):
        _load(path)
    inline = _config(
        tmp_path,
        "  inputs: in.jsonl\n  eval_split: 0.2\n  answer_schema:\n    type: object\n    required: name\n",
        **{"in.jsonl": _rows(5)},
    )
    with pytest.raises(UserError, match=r"run\.yaml:12: answer_schema: required: not valid JSON Schema"):
        _load(inline)


def test_the_task_section_needs_an_instruction_and_one_held_out_set(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task:\n  kind: file\n  inputs: in.jsonl\n  instruction: x\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"run\.yaml:1: task: .*eval_set .* or eval_split"):
        load_run_config(path)
    path.write_text("task:\n  inputs: in.jsonl\n  eval_split: 0.2\n  instrution: x\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"run\.yaml:4: task\.instrution: unknown key"):
        load_run_config(path)


def test_bundled_examples_load_and_their_data_checks_out():
    for name, kind in (("job-postings.yaml", FROM_INPUTS), ("support-summary.yaml", FROM_EVAL_SET)):
        loaded, view, data = _load(REPO / "configs" / "examples" / name)
        assert data.references == kind and data.train and data.eval
        assert (view.schema is not None) == (name == "job-postings.yaml")
        assert all(row.reference is not None for row in data.train)  # the reference teacher can answer all


def test_a_bundled_config_is_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = load_run_config("configs/examples/support-summary.yaml")
    assert Path(loaded.source).name == "support-summary.yaml" and Path(loaded.config.task.inputs).is_file()
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo-tiny.yaml").write_text("output_dir: mine\n", encoding="utf-8")
    assert str(load_run_config("configs/demo-tiny.yaml").config.output_dir) == "mine"  # a file here wins


@pytest.mark.parametrize(
    ("student", "message"),
    [
        ("no-such-model", r"run\.yaml:\d+: student: 'no-such-model' is neither a model directory"),
        ("missing.gguf", r"run\.yaml:\d+: student: .*missing\.gguf not found"),
    ],
)
def test_a_student_that_is_not_there_fails_before_anything_runs(tmp_path, student, message):
    path = _config(
        tmp_path, f"  inputs: in.jsonl\n  eval_split: 0.25\nstudent: {student}\n", **{"in.jsonl": _rows(8)}
    )
    code, output = _cli_run(path, tmp_path / "run")
    assert code == 2 and re.search(message, output), output


def _cli_run(config: Path, run_dir: Path) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "distill", "run", str(config), "--output-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout + result.stderr


def test_bad_input_stops_distill_run_before_any_server_starts(tmp_path):
    rows = [*_rows(6), {"key": "r6", "txt": "typo in the field name"}]
    path = _config(tmp_path, "  inputs: in.jsonl\n  eval_split: 0.25\n", **{"in.jsonl": rows})
    code, output = _cli_run(path, tmp_path / "run")
    assert code == 2, output
    assert re.search(r"in\.jsonl:7: text: missing or empty", output)
    assert "starting" not in output and "running" not in output  # no stage ran, no server started
    assert not (tmp_path / "run" / "stages").exists()
