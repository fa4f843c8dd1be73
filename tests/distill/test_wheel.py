"""The wheel built from this repository: one top-level import name, and it runs with no source checkout.

The wheel and its fresh environment are the session fixtures of tests/conftest.py. ``distill run`` of the
bundled tiny example from an empty directory, with this installed wheel, is tests/pipeline/test_run.py's
end-to-end test.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.conftest import REPO, run_installed


def test_the_wheel_installs_one_top_level_name(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"distill"}
    assert "distill/configs/demo-tiny.yaml" in names
    assert "distill/engine/templates/zh.txt" in names


def test_the_installed_package_is_the_wheel_not_the_checkout(venv: Path, tmp_path: Path):
    done = run_installed(
        venv, tmp_path, str(venv / "bin" / "python"), "-c", "import distill, json; print(distill.__file__)"
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(venv)
    assert not Path(done.stdout.strip()).is_relative_to(REPO)


def test_commands_run_from_an_empty_directory(venv: Path, tmp_path: Path):
    assert run_installed(venv, tmp_path, "distill", "--help").returncode == 0
    train_help = run_installed(venv, tmp_path, "distill", "train", "--help")
    assert train_help.returncode == 0 and "LoRA rank (default: 32)" in train_help.stdout
    done = run_installed(
        venv, tmp_path, "distill", "make-contracts", "--out", "data", "--train", "3", "--eval", "2"
    )
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]
