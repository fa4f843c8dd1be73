"""Every dependency pyproject.toml declares is imported by code that needs it (or says why it is not)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("distill", "engine", "trainer", "evaluator")
# Distribution name → the name code imports it by, where the two differ.
IMPORT_NAMES = {"pyyaml": "yaml", "pytest-timeout": "pytest_timeout"}
# Declared but never imported by name, each for a reason pyproject.toml states beside it.
USED_WITHOUT_IMPORT = {
    "gguf": "transformers reads the packaged GGUF student with it",
    "accelerate": "transformers' Trainer needs it (the stock baseline of `distill bench train`)",
    "pytest-timeout": "a pytest plugin: the `timeout` setting in pyproject.toml",
    "ruff": "a command: scripts/test.sh runs `ruff check` and `ruff format --check`",
    "setuptools": "the wheel test builds the wheel without build isolation",
}


def _imported(folders: tuple[str, ...]) -> set[str]:
    names: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names


def _declared() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    return {
        group: [re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower() for spec in specs]
        for group, specs in groups.items()
    }


def test_every_declared_dependency_is_imported():
    product, tests = _imported(PRODUCT), _imported(("tests",))
    unused = []
    for group, names in _declared().items():
        where = product | tests if group == "dev" else product
        for name in names:
            if name in USED_WITHOUT_IMPORT:
                continue
            if IMPORT_NAMES.get(name, name.replace("-", "_")) not in where:
                unused.append(f"{group}: {name}")
    assert not unused


def test_the_reasons_for_unimported_dependencies_still_hold():
    declared = {name for names in _declared().values() for name in names}
    assert set(USED_WITHOUT_IMPORT) <= declared
    assert not set(USED_WITHOUT_IMPORT) & _imported(PRODUCT)
