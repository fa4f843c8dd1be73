"""Load a YAML config into a pydantic model, with errors that name the file, line and key.

Every config model in the project is a pydantic model with ``extra="forbid"``; this is the one place that
turns a ``ValidationError`` into ``file:line: key: message`` so every subcommand reports bad configs alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from distill.errors import UserError

Model = TypeVar("Model", bound=BaseModel)


def _key_lines(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """Map each key path in a composed YAML document to its 1-based line."""
    lines: dict[tuple, int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            lines.update(_key_lines(value_node, key_path))
            lines[key_path] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_key_lines(item, (*path, index)))
    return lines


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    """Return the mapping in ``path`` and the line of every key in it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: a config must be a mapping of keys to values, got {type(data).__name__}")
    return data, _key_lines(node)


def describe_validation_error(
    exc: ValidationError, source: str, lines: dict[tuple, int] | None = None
) -> str:
    """One line per problem: ``source:line: dotted.key: message``."""
    lines = lines or {}
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        line = None
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        key = ".".join(str(part) for part in loc) or "(top level)"
        where = f"{source}:{line}" if line else source
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{where}: {key}: {message}")
    return "\n".join(problems)


def load_config(
    model: type[Model], path: str | Path | None, overrides: dict[str, Any] | None = None
) -> Model:
    """Validate ``path`` (optional) merged with ``overrides`` (flags win; ``None`` values are ignored).

    A nested override (``{"teacher": {"model": "m"}}``) replaces only the keys it names in that section.
    """
    data: dict[str, Any] = {}
    lines: dict[tuple, int] = {}
    source = str(path) if path else "command line"
    if path:
        data, lines = read_yaml(path)
    _apply_overrides(data, overrides or {}, lines, ())
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, source, lines)) from None


def _apply_overrides(
    data: dict[str, Any], overrides: dict[str, Any], lines: dict[tuple, int], path: tuple
) -> None:
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            _apply_overrides(data[key], value, lines, (*path, key))
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
            if not value:
                continue
        data[key] = value
        lines.pop((*path, key), None)
