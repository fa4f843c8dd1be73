"""Product text speaks to users about the product: no issue numbers, build-machine paths or team history."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from distill.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
LEAKS = re.compile(
    r"\bissues? #?\d+|/work/|/root/|/tmp/|\b(this|that|a|the) session\b(?! (figures|counters|only))|"
    r"\bengineers?\b|\bFACTS\.md\b|\bworktree\b|\bheavy(-job)? lock\b|\bthe lock's queue\b",
    re.IGNORECASE,
)
# In code "session" is the product's own word (an engine session, this run's session counters).
SHIPPED_LEAKS = re.compile(
    r"\bissues? #?\d+|/work/|/root/|/tmp/\w|\bengineers?\b|\bFACTS\.md\b|\bworktree\b|\bheavy(-job)? lock\b",
    re.IGNORECASE,
)


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_no_help_text_leaks_history_or_machine_paths():
    leaks = {
        sub.prog: LEAKS.findall(sub.format_help())
        for sub in _all_parsers(build_parser())
        if LEAKS.search(sub.format_help())
    }
    assert not leaks


@pytest.mark.parametrize(
    "path",
    [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "configs").rglob("*.yaml"))],
)
def test_docs_and_configs_do_not_leak_history_or_machine_paths(path: Path):
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if LEAKS.search(line)
    ]
    assert not found


def test_shipped_code_does_not_leak_history_or_machine_paths():
    """What ships prints messages, reports and pages from these files: none names an issue or a build machine."""
    suffixes = {".py", ".sh", ".yaml", ".json", ".txt", ".html", ".js", ".css"}
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("distill", "engine", "trainer", "evaluator", "configs", "scripts")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in suffixes and path.is_file()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SHIPPED_LEAKS.search(line)
    ]
    assert not found
