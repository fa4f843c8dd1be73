"""Where distill may write: foreign directories, roots and homes refused; damaged run files named."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest
from distill.engine.config import GenerateConfig
from distill.engine.export import export_dataset
from distill.engine.runner import prepare_run

from distill.endpoint import Endpoint
from distill.errors import UserError
from tests.engine.run_dirs import accepted, lines


def config_for(tmp_path: Path, output_dir: Path) -> GenerateConfig:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"id": "a", "input": "合同"}\n')
    return GenerateConfig(
        input=inputs, output_dir=output_dir, teacher=Endpoint(base_url="http://127.0.0.1:9/v1", model="m")
    )


@pytest.mark.parametrize("stray", ["summary.json", "done.keys", "notes.txt"])
def test_a_non_empty_directory_that_is_not_a_run_is_refused_and_left_alone(tmp_path, stray):
    target = tmp_path / "mine"
    target.mkdir()
    (target / stray).write_text("not distill's")
    with pytest.raises(UserError, match=f"not empty and not a distill run directory .*{stray}"):
        prepare_run(config_for(tmp_path, target))
    assert os.listdir(target) == [stray] and (target / stray).read_text() == "not distill's"


def test_roots_and_homes_are_never_an_output_directory(tmp_path):
    for place, what in ((Path("/"), "root of a filesystem"), (Path.home(), "home directory")):
        with pytest.raises(UserError, match=what):
            prepare_run(config_for(tmp_path, place))
        with pytest.raises(UserError, match=what):
            export_dataset(_run(tmp_path), place)


def test_an_empty_or_new_directory_becomes_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "new" / "run"):
        prepare_run(config_for(tmp_path, target)).close()
        assert (target / "run.json").exists()
        prepare_run(config_for(tmp_path, target)).close()  # and resumes


@pytest.mark.parametrize("content", [b"[1, 2]", b'{"format": 1}', b"{not json"])
def test_a_damaged_run_json_is_named_with_what_to_do(tmp_path, content):
    target = tmp_path / "run"
    prepare_run(config_for(tmp_path, target)).close()
    (target / "run.json").write_bytes(content)
    with pytest.raises(
        UserError, match=r"run\.json: .*(restore it from a backup|give a new output directory)"
    ):
        prepare_run(config_for(tmp_path, target))


def _run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "exported run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "accepted-00000.jsonl").write_text(lines(accepted("a")))
    (run_dir / "summary.json").write_text(json.dumps({"status": "complete"}))
    return run_dir


def test_export_name_stays_inside_out_dir(tmp_path):
    for name in ("../x", "a/b", ".hidden", "/abs"):
        with pytest.raises(UserError, match="--name: .* must be a plain file name"):
            export_dataset(_run(tmp_path), tmp_path / "out", name=name)
    assert not (tmp_path / "x_alpaca.jsonl").exists()


def test_export_refuses_a_dataset_info_that_is_not_a_mapping_before_writing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset_info.json").write_text("[]")
    with pytest.raises(UserError, match=r"dataset_info\.json: holds a list, not the mapping"):
        export_dataset(_run(tmp_path), out)
    assert os.listdir(out) == ["dataset_info.json"]


def test_export_of_a_run_still_generating_or_unfinished_warns(tmp_path, capsys):
    run_dir = _run(tmp_path)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a running `distill generate` holds it
    try:
        result = export_dataset(run_dir, tmp_path / "out")
    finally:
        os.close(fd)
    assert "still writing to this run" in result["warnings"][0] and "still writing" in capsys.readouterr().err
    (run_dir / "summary.json").write_text(json.dumps({"status": "interrupted", "done": 1, "total": 5}))
    assert "status 'interrupted' (1 of 5 done)" in export_dataset(run_dir, tmp_path / "out")["warnings"][0]
    (run_dir / "summary.json").write_text(json.dumps({"status": "complete"}))
    assert export_dataset(run_dir, tmp_path / "out")["warnings"] == []
