"""Command-line flags generated from a pydantic config model, so that each setting is declared once.

A subcommand names its config model; this module turns the model's fields (name, type, default and
``Field(description=...)``) into argparse flags, and the flags given back into overrides of the
``--config`` file. The rules:

- A field ``max_tokens`` is ``--max-tokens``; a field of a nested model is ``--section.field-name``
  (``--filters.min-output-chars``). A nested model declared with ``json_schema_extra={"flag_prefix": ""}``
  gives its fields flags without the section's name (``GenerateConfig.teacher`` → ``--base-url``; a prefix
  such as ``"judge-"`` gives ``--judge-base-url``), relative to the enclosing section's own prefix. A field
  can name its own flag: ``json_schema_extra={"flag": "json"}`` is relative to its section (``--json`` at the
  top, ``--section.json`` below it), ``{"flag": "--latency"}`` is that flag wherever the model is nested
  (``EvalConfig.latency.enabled`` → ``--latency``/``--no-latency``), and ``{"flag": None}`` means no flag.
  ``{"refused": True}`` marks a key a config may not set at all (`distill run`'s sections leave the keys the
  run decides to it): no flag, and ``--help`` does not list it.
- ``bool`` → ``--x`` / ``--no-x``; ``Literal`` → its choices; a list of scalars → a repeatable flag that
  replaces the list; ``X | None`` → ``X``; a union with ``str`` → the text, parsed by the model. Dicts and
  lists of models have no flag: they are set in the file, and ``--help`` names them.
- A setting comes from its flag if given, else from the file, else from the model's default, which
  ``--help`` shows beside each flag.
- A bad value is blamed on where it came from: ``--max-tokens: ...`` for a flag, ``file:line: key: ...``
  for the file.
"""

from __future__ import annotations

import argparse
import textwrap
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from distill.config_files import Lines, describe_validation_error, read_config, refuse_booleans_for_numbers
from distill.configs import local_or_bundled
from distill.errors import UserError

Model = TypeVar("Model", bound=BaseModel)

_UNIONS = (typing.Union, types.UnionType)
_METAVARS = {str: "TEXT", Path: "PATH", int: "N", float: "X"}
_DEFAULT_SHOWN_CHARS = 60
_HELP_WIDTH = 100


@dataclass(frozen=True)
class Flag:
    """One generated flag: its option string and the key path it sets in the config."""

    option: str
    path: tuple[str, ...]
    required: bool = False

    @property
    def dest(self) -> str:
        return ".".join(self.path)


# -- from a field's type to argparse -------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` → X and ``X | None`` → X."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in _UNIONS:
        arms = [arm for arm in typing.get_args(annotation) if arm is not type(None)]
        if len(arms) == 1:
            return _unwrap(arms[0])
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _scalar(annotation: Any) -> type | None:
    """A scalar field's type (argparse converts to it, the model to Path); None when it is not a scalar."""
    return annotation if annotation in (str, Path, int, float) else None


class _Switch(argparse.Action):
    """``--x`` sets True, ``--no-x`` False; for a dotted flag the negation is ``--section.no-x``."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        positive = option_strings[0]
        head, _, tail = positive[2:].rpartition(".")
        negative = f"--{head}.no-{tail}" if head else f"--no-{tail}"
        super().__init__([positive, negative], dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, option_string == self.option_strings[0])

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


def _argparse_options(annotation: Any) -> dict[str, Any] | None:
    """How argparse reads a field of this type; None when the field is set in the file only."""
    kind = _unwrap(annotation)
    origin = typing.get_origin(kind)
    if kind is bool:
        return {"action": _Switch}
    if (scalar := _scalar(kind)) is not None:
        return {"type": scalar, "metavar": _METAVARS[scalar]}
    if origin is Literal:
        choices = typing.get_args(kind)
        return {"type": type(choices[0]), "choices": choices}
    if origin is list:
        item = _argparse_options(typing.get_args(kind)[0])
        if item is not None and "action" not in item:  # a list of scalars or of choices: a repeatable flag
            return {**item, "action": "append"}
    if origin in _UNIONS and any(
        arm is str or typing.get_origin(arm) is Literal for arm in typing.get_args(kind)
    ):
        return {
            "type": str,
            "metavar": "TEXT",
        }  # e.g. `list[str] | Literal["all"]`: the model parses the text
    return None


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        text = "on" if value else "off"
    elif value is None:
        text = "none"
    elif value == "":
        text = "empty"
    elif isinstance(value, list | tuple):
        text = ", ".join(str(item) for item in value) or "none"
    else:
        text = str(value)
    if len(text) > _DEFAULT_SHOWN_CHARS:
        text = text[: _DEFAULT_SHOWN_CHARS - 1] + "…"
    return text


def _help_text(field: FieldInfo, default: Any, optional_section: str | None = None) -> str:
    """The field's description and its default (unless the description says what its default means)."""
    description = field.description or ""
    if field.is_required():
        description = (
            f"{description} (required{f' when {optional_section} is set' if optional_section else ''})"
        )
    elif "(default:" not in description:
        description = f"{description} (default: {_default_text(default)})"
    return description.strip().replace("%", "%%")


def _extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


# -- the flags of one model ----------------------------------------------------------------------------


@dataclass
class _Setting:
    flag: Flag
    field: FieldInfo
    options: dict[str, Any]
    default: Any = None  # what the setting is when neither the file nor a flag gives it
    # The enclosing section that may be left out (its required fields are required only when it is given).
    optional_section: str | None = None


def _default(field: FieldInfo, name: str, section_default: BaseModel | None) -> Any:
    """A field's default as the config really gets it: a section built by its own default factory (e.g.
    ``targets: LatencyTargets(ttft_ms=2000)``) sets its fields' defaults, not the nested model's."""
    if section_default is not None:
        return getattr(section_default, name)
    return None if field.is_required() else field.get_default(call_default_factory=True)


def _settings(
    model: type[BaseModel],
    path: tuple[str, ...],
    prefix: str,
    file_only: list[str],
    optional_section: str | None = None,
    section_default: BaseModel | None = None,
) -> list[_Setting]:
    found: list[_Setting] = []
    for name, field in model.model_fields.items():
        key_path = (*path, name)
        dotted = ".".join(key_path)
        extra = _extra(field)
        if extra.get("refused"):
            continue
        kind = _unwrap(field.annotation)
        if _is_model(kind) and extra.get("flag", "") is not None:
            section_prefix = prefix + extra.get("flag_prefix", f"{name.replace('_', '-')}.")
            optional = optional_section if field.is_required() else dotted
            default = _default(field, name, section_default)
            nested_default = default if isinstance(default, BaseModel) else None
            found += _settings(kind, key_path, section_prefix, file_only, optional, nested_default)
            continue
        options = _argparse_options(field.annotation) if extra.get("flag", "") is not None else None
        if options is None:
            file_only.append(dotted)
            continue
        declared = extra.get("flag") or name.replace("_", "-")
        option = declared if declared.startswith("--") else f"--{prefix}{declared}"
        flag = Flag(option, key_path, field.is_required())
        found.append(_Setting(flag, field, options, _default(field, name, section_default), optional_section))
    return found


class ConfigFlags:
    """The flags one config model adds to a parser, and the validated config they build with the file."""

    def __init__(self, model: type[BaseModel], parser: argparse.ArgumentParser) -> None:
        self.model = model
        self.file_only: list[str] = []
        settings = _settings(model, (), "", self.file_only)
        self.flags = [setting.flag for setting in settings]
        group = parser.add_argument_group(
            "settings", "Each flag overrides the same key of the --config file; defaults are shown."
        )
        for setting in settings:
            group.add_argument(
                setting.flag.option,
                dest=setting.flag.dest,
                default=argparse.SUPPRESS,
                help=_help_text(setting.field, setting.default, setting.optional_section),
                **setting.options,
            )

    def given(self, args: argparse.Namespace) -> dict[Flag, Any]:
        """The flags on this command line with their values (flags left out are not in ``args``)."""
        return {flag: getattr(args, flag.dest) for flag in self.flags if hasattr(args, flag.dest)}

    def load(self, config_file: str | Path | None, args: argparse.Namespace) -> Loaded[Any]:
        return load_settings(self.model, config_file, self.given(args), self.flags)


# -- merging and validating ----------------------------------------------------------------------------


def _set_key(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        inner = data.get(key)
        if not isinstance(inner, dict):
            inner = data[key] = {}
        data = inner
    data[path[-1]] = value


class _SomeErrors:
    """Part of a ValidationError's errors, in the shape describe_validation_error reads."""

    def __init__(self, errors: list[Any]) -> None:
        self._errors = errors

    def errors(self) -> list[Any]:
        return self._errors


def _required_flags(loc: tuple, flags: Sequence[Flag]) -> list[str]:
    """The flags that would give a missing key: its own, or a missing section's required ones."""
    return [
        flag.option for flag in flags if flag.path[: len(loc)] == loc and (flag.required or flag.path == loc)
    ]


def describe_errors(
    exc: ValidationError, source: str, lines: Lines, given: Sequence[Flag], flags: Sequence[Flag]
) -> str:
    """Each problem blamed on the flag that set the value, else on the file's line, else on the key."""
    by_given = {flag.path: flag for flag in given}
    problems: list[str] = []
    rest: list[Any] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        blamed = next((by_given[loc[:cut]] for cut in range(len(loc), 0, -1) if loc[:cut] in by_given), None)
        message = error["msg"].removeprefix("Value error, ")
        if blamed is not None:
            problems.append(f"{blamed.option}: {message}")
        elif not loc and not lines:
            problems.append(message)  # a rule across settings, all given as flags or defaults
        elif error["type"] == "missing" and (needed := _required_flags(loc, flags)):
            problems.append(
                f"{' and '.join(needed)} required (or `{'.'.join(map(str, loc))}:` in a --config file)"
            )
        else:
            rest.append(error)
    if rest:
        problems.append(describe_validation_error(_SomeErrors(rest), source, lines))  # type: ignore[arg-type]
    return "\n".join(problems)


@dataclass(frozen=True)
class Loaded(Generic[Model]):
    """A validated config, the file it came from, and where each file key is written (keys set by a flag left
    out; keys from a file it extends name that file)."""

    config: Model
    source: str
    lines: Lines


def load_settings(
    model: type[Model], config_file: str | Path | None, given: dict[Flag, Any], flags: Sequence[Flag] = ()
) -> Loaded[Model]:
    """The model's defaults, under the file's keys, under the flags given; errors say where each came from."""
    data: dict[str, Any] = {}
    lines: Lines = {}
    if config_file:
        data, lines = read_config(config_file)
    for flag, value in given.items():
        _set_key(data, flag.path, value)
        lines = {key: line for key, line in lines.items() if key[: len(flag.path)] != flag.path}
    source = str(config_file) if config_file else "command line"
    refuse_booleans_for_numbers(model, data, source, lines)
    try:
        return Loaded(model.model_validate(data), source, lines)
    except ValidationError as exc:
        raise UserError(describe_errors(exc, source, lines, list(given), flags)) from None


# -- subcommands ---------------------------------------------------------------------------------------


class Command:
    """One subcommand: its words, its config model, and the library call it hands the config to.

    A subclass sets the class attributes and ``run``; ``add_arguments`` adds flags that are actions rather
    than settings (``--force``).
    """

    name: ClassVar[str]
    help: ClassVar[str]
    description: ClassVar[str | None] = None
    epilog: ClassVar[str | None] = None
    config: ClassVar[type[BaseModel]]
    # `distill run CONFIG` also takes the file as its one positional argument.
    positional_config: ClassVar[bool] = False

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Flags that are not settings; none by default."""

    def run(self, config: Any, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def run_loaded(self, loaded: Loaded[Any], args: argparse.Namespace) -> int:
        """What runs: ``run`` with the config; a command that also needs the file's lines overrides this."""
        return self.run(loaded.config, args)


def add_command(subcommands: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    """Add ``command``'s parser: ``--config``, its own flags, then one flag per setting of its model."""
    parser = subcommands.add_parser(
        command.name,
        usage=f"%(prog)s [-h]{' [CONFIG]' if command.positional_config else ''} [--config FILE.yaml] "
        "[options] [--setting VALUE ...]",
        help=command.help,
        description=_paragraph(command.description or command.help),
        epilog=command.epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    if command.positional_config:
        parser.add_argument("config_file", nargs="?", metavar="CONFIG", help="same as --config")
    parser.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="settings file (or a bundled config's name, e.g. demo-tiny); flags override its keys",
    )
    command.add_arguments(parser)
    flags = ConfigFlags(command.config, parser)

    def handle(args: argparse.Namespace) -> int:
        return command.run_loaded(flags.load(_config_file(parser, args), args), args)

    parser.set_defaults(handler=handle)
    _file_only_note(parser, flags)
    return parser


def _paragraph(text: str) -> str:
    """One line of prose is wrapped; text that has its own lines (a module's docstring) is kept as written."""
    return text.strip() if "\n" in text.strip() else textwrap.fill(text, _HELP_WIDTH)


def _config_file(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path | None:
    positional = getattr(args, "config_file", None)
    if positional and args.config:
        parser.error("give the config file once: as CONFIG or as --config, not both")
    value = positional or args.config
    return local_or_bundled(value) if value else None


def _file_only_note(parser: argparse.ArgumentParser, flags: ConfigFlags) -> None:
    if flags.file_only:
        note = "Set in a --config file only: " + ", ".join(flags.file_only) + "."
        parser.epilog = f"{parser.epilog}\n{note}" if parser.epilog else note
