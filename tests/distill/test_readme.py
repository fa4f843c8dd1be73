"""The README's command table and code map match the code."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from distill.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_command_table_names_every_command_and_only_those():
    commands = _subcommands(build_parser())
    expected = {name for name in commands if name != "bench"}
    expected |= {f"bench {name}" for name in _subcommands(commands["bench"])}
    rows = [line for line in _section("What it does").splitlines() if line.startswith("| `distill ")]
    named = set()
    for row in rows:
        first_cell = row.split("|")[1]
        for command in re.findall(r"`distill ([a-z-]+(?: [a-z-]+)?)", first_cell):
            words = command.split()
            named.add(" ".join(words[:2]) if words[0] == "bench" else words[0])
        named |= {f"bench {name}" for name in re.findall(r"/ `bench ([a-z-]+)`", first_cell)}
    assert named == expected


def test_every_path_in_the_code_map_exists():
    paths = re.findall(r"`([\w.-]+/[\w./-]*)`", _section("Where the code is"))
    assert len(paths) > 20
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert not missing


def test_the_code_map_names_every_package_module():
    """Each production module is named in the map: by its path, by a sub-folder the map names (not a whole
    package), or by a bare file name every package has (each package's `commands.py`)."""
    text = _section("Where the code is")
    named = set(re.findall(r"`([\w./-]+\.py)`", text))
    packages = ("engine", "trainer", "evaluator", "distill")
    folders = tuple(f for f in re.findall(r"`([\w./-]+/)`", text) if f.rstrip("/") not in packages)
    assert folders, "the map names no sub-folder"
    unnamed = [
        str(path.relative_to(ROOT))
        for folder in packages
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "__init__.py"
        and str(path.relative_to(ROOT)) not in named
        and not (path.name == "commands.py" and "commands.py" in named)
        and not str(path.relative_to(ROOT)).startswith(folders)
    ]
    assert not unnamed
