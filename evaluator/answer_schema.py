"""A task's answer schema: the JSON Schema a structured answer must satisfy, and what it says about each field.

It drives three things: format compliance (the final answer is valid JSON that satisfies the schema), the
fields that field-level precision/recall/F1 counts (the schema's top-level ``properties``), and how each field
is normalised before it is compared (by its type: numbers as numbers, ``format: date`` strings as ISO dates,
other strings folded for width, case, whitespace and edge punctuation).

A schema that is not valid JSON Schema is refused with the file and line of the offending keyword, before
anything runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distill.engine.parsing import answer_of
from jsonschema import SchemaError, ValidationError, validators

from distill.config_files import Lines, locate, read_yaml
from distill.errors import UserError

_FENCED = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```$", re.DOTALL)
STRING_NORMALISERS = ["nfkc", "casefold", "whitespace", "strip_punct"]


def _field_type(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else None


def normalisers_for(schema: Mapping[str, Any]) -> list[str]:
    """How a value of this (sub)schema is normalised before comparing: by its type and format."""
    kind = _field_type(schema)
    if kind in ("number", "integer"):
        return ["nfkc", "number"]
    if kind == "string" and schema.get("format") in ("date", "date-time"):
        return ["nfkc", "date"]
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        return normalisers_for(schema["items"])  # a list is compared as the set of its normalised items
    if kind == "boolean":
        return ["casefold"]
    return list(STRING_NORMALISERS)


class AnswerSchema:
    """A checked JSON Schema, with the fields and normalisers it implies."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        cls = validators.validator_for(schema)
        # Formats are checked too: a `format: date` field must hold a date for the answer to comply.
        self._validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        properties = schema.get("properties")
        self.properties: dict[str, Any] = dict(properties) if isinstance(properties, Mapping) else {}

    @property
    def fields(self) -> list[str]:
        return list(self.properties)

    def field_normalisers(self) -> dict[str, list[str]]:
        return {
            name: normalisers_for(sub if isinstance(sub, Mapping) else {})
            for name, sub in self.properties.items()
        }

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not satisfy the schema (the first reason, with where), or None when it does."""
        error: ValidationError | None = next(iter(self._validator.iter_errors(value)), None)
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path)
        return f"{where + ': ' if where else ''}{error.message}"

    def parse_strict(self, text: str) -> tuple[Any, bool]:
        """The final answer as JSON (one value, alone or in one ```json fence): (value, parsed)."""
        answer = answer_of(text).strip()
        fenced = _FENCED.match(answer)
        if fenced:
            answer = fenced.group(1).strip()
        try:
            return json.loads(answer), True
        except json.JSONDecodeError:
            return None, False

    def complies(self, text: str | None) -> bool:
        """Format compliance: the final answer is valid JSON that satisfies the schema."""
        if text is None:
            return False
        value, parsed = self.parse_strict(text)
        return parsed and self.problem(value) is None


def check_schema(schema: Any, source: str, lines: Lines | None = None) -> AnswerSchema:
    """Refuse anything that is not a valid JSON Schema for an answer, naming ``source`` and the line."""
    if not isinstance(schema, dict):
        raise UserError(f"{source}: answer_schema: must be a JSON Schema object, got {type(schema).__name__}")
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        path = tuple(exc.absolute_path)
        where = locate(lines or {}, path, source)
        key = "/".join(str(part) for part in path) or "(top level)"
        raise UserError(f"{where}: answer_schema: {key}: not valid JSON Schema: {exc.message}") from None
    return AnswerSchema(schema)


def load_answer_schema(path: str | Path) -> AnswerSchema:
    """A schema file (JSON, or YAML with the same structure), checked; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: answer_schema: file not found")
    data, lines = read_yaml(path)  # JSON is YAML; this also gives every key's line for the errors
    return check_schema(data, str(path), lines)
