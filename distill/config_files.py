"""Load a YAML config into a pydantic model, with errors that name the file, line and key.

Every config model in the project is a pydantic model with ``extra="forbid"``; this is the one place that
turns a ``ValidationError`` into ``file:line: key: message`` so every subcommand reports bad configs alike.
A config may start from another with ``extends: other.yaml``; each key remembers the file it came from.
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Annotated, Any, NamedTuple, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from distill.configs import bundled
from distill.errors import UserError

Model = TypeVar("Model", bound=BaseModel)


class Where(NamedTuple):
    """A key's place: the config file it was written in and its 1-based line; prints as ``file:line``."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


Lines = dict[tuple, Where]


def _key_lines(node: yaml.Node, file: str, path: tuple = ()) -> Lines:
    """Map each key path in a composed YAML document to where it is written."""
    lines: Lines = {path: Where(file, node.start_mark.line + 1)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            lines.update(_key_lines(value_node, file, key_path))
            lines[key_path] = Where(file, key_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_key_lines(item, file, (*path, index)))
    return lines


# A config is a page of settings: anything bigger, or any document that expands past this many nodes through
# anchors and aliases (an "alias bomb" grows exponentially), is refused before it is built in memory.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_NODES = 100_000


def _check_nodes(root: yaml.Node, path: Path) -> None:
    """Count the nodes as aliases expand them (up to the limit) and refuse a key written twice in a mapping."""
    seen = 0
    stack = [root]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_NODES:
            raise UserError(
                f"{path}:{node.start_mark.line + 1}: the document expands to more than {MAX_CONFIG_NODES:,} "
                "values through anchors and aliases; a config never needs that many (an alias bomb?)"
            )
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                    line = key_node.start_mark.line + 1
                    if key_node.value in first_line:
                        raise UserError(
                            f"{path}:{line}: {key_node.value}: written twice in one mapping (first on line "
                            f"{first_line[key_node.value]}); keep one"
                        )
                    first_line[key_node.value] = line
                stack += (key_node, value_node)
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def read_yaml(path: str | Path) -> tuple[dict[str, Any], Lines]:
    """Return the mapping in ``path`` and where every key in it is written.

    Refused, naming the file and line: a file over 1 MiB, a document that expands past 100,000 values through
    aliases, and a key written twice in one mapping (YAML would silently keep the last).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise UserError(
                f"{path}: config file is {size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,}"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: config file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read config: {exc.strerror}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, {}
        _check_nodes(node, path)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: a config must be a mapping of keys to values, got {type(data).__name__}")
    return data, _key_lines(node, str(path))


# A chain of files extending each other longer than this is a mistake, not a config.
MAX_EXTENDS = 8


def read_config(path: str | Path) -> tuple[dict[str, Any], Lines]:
    """`read_yaml`, following ``extends:``: the file's keys laid over those of the file it names.

    ``extends: base.yaml`` names a file beside this one (or a bundled config, ``extends: demo``). Mappings
    merge key by key at every depth; any other value (a list included) replaces the base's. Each key keeps
    the file and line it came from, so errors point into the right file. Refused, naming the file and line:
    a missing base, a chain longer than 8 files, a file that extends itself through the chain.
    """
    return _read_extending(Path(path), ())


def _read_extending(path: Path, below: tuple[Path, ...]) -> tuple[dict[str, Any], Lines]:
    data, lines = read_yaml(path)
    if "extends" not in data:
        return data, lines
    where, named = lines.pop(("extends",)), data.pop("extends")
    if not isinstance(named, str) or not named.strip():
        raise UserError(f"{where}: extends: needs the name of another config file, got {named!r}")
    base_path = path.parent / named
    if not base_path.is_file():
        base_path = bundled(named) or base_path
    if not base_path.is_file():
        raise UserError(f"{where}: extends: {named}: no such file beside {path.name}, nor a bundled config")
    chain = (*below, path.resolve())
    if base_path.resolve() in chain:
        cycle = " -> ".join(p.name for p in (*chain, base_path.resolve()))
        raise UserError(f"{where}: extends: {named} makes a cycle ({cycle}); a file cannot extend itself")
    if len(chain) >= MAX_EXTENDS:
        raise UserError(
            f"{where}: extends: more than {MAX_EXTENDS} files extend each other; flatten the chain"
        )
    base, base_lines = _read_extending(base_path, chain)
    kept = {key: place for key, place in base_lines.items() if key and not _replaced(key, data)}
    return _merged(base, data), {**kept, **lines}


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        merged[key] = _merged(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
    return merged


def _replaced(key: tuple, over: dict[str, Any]) -> bool:
    """Whether the base's key path is written over in ``over``: the path itself, or a non-mapping above it."""
    node: Any = over
    for part in key:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
        if not isinstance(node, dict):
            return True
    return True


def _leaf_types(annotation: Any) -> set[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaf_types(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return set().union(*(_leaf_types(arg) for arg in get_args(annotation)))
    return {annotation}


def refuse_booleans_for_numbers(
    model: type[BaseModel], data: dict[str, Any], source: str, lines: Lines, path: tuple = ()
) -> None:
    """YAML reads true/yes/on as booleans and pydantic would take them as 1: refuse a boolean for a number."""
    for name, field in model.model_fields.items():
        key = field.alias or name
        if not isinstance(data, dict) or key not in data:
            continue
        value, types, where = data[key], _leaf_types(field.annotation), (*path, key)
        if isinstance(value, bool) and bool not in types and types & {int, float}:
            written = lines.get(where)
            raise UserError(
                f"{written}: {'.'.join(map(str, where))}: needs a number, got {str(value).lower()} "
                "(YAML reads true/false/yes/no/on/off as booleans)"
                if written
                else f"{source}: {'.'.join(map(str, where))}: needs a number, got {str(value).lower()}"
            )
        for inner in types:
            if isinstance(inner, type) and issubclass(inner, BaseModel) and isinstance(value, dict):
                refuse_booleans_for_numbers(inner, value, source, lines, where)
            elif get_origin(inner) is dict and isinstance(value, dict):
                args = get_args(inner)
                item = args[1] if len(args) == 2 else None
                if isinstance(item, type) and issubclass(item, BaseModel):
                    for item_key, item_value in value.items():
                        if isinstance(item_value, dict):
                            refuse_booleans_for_numbers(item, item_value, source, lines, (*where, item_key))


def locate(lines: Lines, key: tuple, source: str) -> str:
    """``file:line`` of ``key``, or of the nearest enclosing key written in a file; else ``source``."""
    for cut in range(len(key), -1, -1):
        if key[:cut] in lines:
            return str(lines[key[:cut]])
    return source


def describe_validation_error(exc: ValidationError, source: str, lines: Lines | None = None) -> str:
    """One line per problem: ``file:line: dotted.key: message``."""
    lines = lines or {}
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        key = ".".join(str(part) for part in loc) or "(top level)"
        where = locate(lines, loc, source)
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
    lines: Lines = {}
    source = str(path) if path else "command line"
    if path:
        data, lines = read_config(path)
    _apply_overrides(data, overrides or {}, lines, ())
    refuse_booleans_for_numbers(model, data, source, lines)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, source, lines)) from None


def _apply_overrides(data: dict[str, Any], overrides: dict[str, Any], lines: Lines, path: tuple) -> None:
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
