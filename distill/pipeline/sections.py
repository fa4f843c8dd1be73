"""Typed sections of the run config: the engine's, trainer's and evaluator's own config models, minus the keys
`distill run` fills in itself.

``section_model(GenerateConfig, owned={"input": "why", ...})`` is a pydantic model with every other field of
GenerateConfig — same types, bounds, defaults, descriptions and field validators — so a bad nested key in the
run config fails when the file is loaded, with its file and line, before any stage runs. An owned key stays a
field that refuses any value, saying who sets it (``generate.input: set by `distill run` itself (the data stage
writes the inputs)``), and has no flag; a dotted owned key (``judge.base_url``) reaches into a nested model.
What the user wrote is ``model_dump(exclude_unset=True)``; the stage merges it over its own values and
validates the full model (its cross-field checks included).
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator
from pydantic.fields import FieldInfo


def _nested_model(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """``(Model, optional)`` when ``annotation`` is a model or ``Model | None``; else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return args[0], len(args) < len(get_args(annotation))
    return None


def _kept_field_validators(model: type[BaseModel], kept: set[str]) -> dict[str, Any]:
    validators: dict[str, Any] = {}
    for name, decorator in model.__pydantic_decorators__.field_validators.items():
        fields = [name for name in decorator.info.fields if name in kept]
        if fields:
            # Stored bound to the original model: take the plain function and bind it to the section instead.
            function = getattr(decorator.func, "__func__", decorator.func)
            validators[name] = field_validator(*fields, mode=decorator.info.mode)(classmethod(function))
    return validators


def _refuser(reasons: Mapping[str, str]) -> Any:
    def refuse(cls: type, value: Any, info: ValidationInfo) -> Any:
        raise ValueError(
            f"set by `distill run` itself ({reasons[info.field_name]}); remove it from this section"
        )

    return field_validator(*reasons)(classmethod(refuse))


def section_model(model: type[BaseModel], owned: Mapping[str, str], *, name: str) -> type[BaseModel]:
    """``model`` with the ``owned`` keys (dotted for nested models; value: who sets it) refusing any value."""
    top = {key: why for key, why in owned.items() if "." not in key}
    nested: dict[str, dict[str, str]] = {}
    for key, why in owned.items():
        if "." in key:
            head, rest = key.split(".", 1)
            nested.setdefault(head, {})[rest] = why
    unknown = (set(top) | set(nested)) - set(model.model_fields)
    if unknown:
        raise AssertionError(f"{model.__name__} has no field {sorted(unknown)[0]!r}")
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        if field_name in top:
            fields[field_name] = (Any, Field(default=None, json_schema_extra={"refused": True}))
            continue
        if field_name in nested:
            found = _nested_model(info.annotation)
            if found is None:
                raise AssertionError(f"{model.__name__}.{field_name} is not a nested model")
            inner, optional = found
            section = section_model(inner, nested[field_name], name=f"{name}_{field_name}")
            annotation = section | None if optional else section
            # The section of a nested model always exists (empty when the user wrote nothing there).
            fields[field_name] = (
                annotation,
                FieldInfo(default_factory=section, description=info.description),
            )
        else:
            fields[field_name] = (info.annotation, info)
    validators = _kept_field_validators(model, set(fields) - set(top))
    if top:
        validators["_refuse_owned"] = _refuser(top)
    return create_model(
        name,
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"{model.__name__}, less what `distill run` decides itself: {', '.join(sorted(owned))}.",
        __validators__=validators,
        **fields,
    )


def chosen(section: BaseModel | None) -> dict[str, Any]:
    """Only what the user wrote in a section (nested sections likewise), as plain data."""
    if section is None:
        return {}
    return section.model_dump(mode="json", exclude_unset=True)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, recursively for nested mappings."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
