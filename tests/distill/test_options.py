import argparse
from pathlib import Path
from typing import Literal

import pytest
from distill.configs import local_or_bundled
from pydantic import BaseModel, ConfigDict, Field

from distill.cli import build_parser, main
from distill.errors import UserError
from distill.options import Command, ConfigFlags, add_command


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(default="http://127.0.0.1:8000/v1", description="where to send")
    model: str = Field(description="model name")
    rpm: float | None = Field(default=None, gt=0)


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_chars: int = Field(default=50, ge=0, description="shortest answer")
    dedupe: bool = True
    phrases: list[str] = Field(default_factory=lambda: ["sorry"])
    strict: bool = Field(default=False, json_schema_extra={"flag": "--strict"})


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output_dir: Path = Field(description="where it goes")
    max_tokens: int = Field(default=1024, ge=1, description="answer length")
    mode: Literal["fast", "slow"] = "fast"
    teacher: Endpoint = Field(json_schema_extra={"flag_prefix": ""})
    judge: Endpoint | None = Field(default=None, json_schema_extra={"flag_prefix": "judge-"})
    filters: Filters = Field(default_factory=Filters)
    latency: bool = Field(default=True, json_schema_extra={"flag": "timing"})
    prices: dict[str, float] = Field(default_factory=dict)
    secret: str = Field(default="", json_schema_extra={"flag": None})


class Echo(Command):
    name = "echo"
    help = "print the settings"
    config = Settings

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--force", action="store_true")

    def run(self, config: Settings, args: argparse.Namespace) -> int:
        self.seen = (config, args.force)
        return 0


def _parser() -> tuple[argparse.ArgumentParser, Echo]:
    root = argparse.ArgumentParser(prog="t", allow_abbrev=False)
    echo = Echo()
    add_command(root.add_subparsers(dest="command", required=True), echo)
    return root, echo


def _run(argv: list[str]) -> Settings:
    root, echo = _parser()
    args = root.parse_args(["echo", *argv])
    assert args.handler(args) == 0
    return echo.seen[0]


def test_flag_names_follow_the_model():
    root, _ = _parser()
    parser = root._subparsers._group_actions[0].choices["echo"]
    options = {option for action in parser._actions for option in action.option_strings}
    assert {"--output-dir", "--max-tokens", "--mode", "--base-url", "--model", "--rpm"} <= options
    assert {"--judge-base-url", "--judge-model", "--filters.min-chars", "--filters.phrases"} <= options
    assert {
        "--filters.dedupe",
        "--filters.no-dedupe",
        "--timing",
        "--no-timing",
        "--strict",
        "--no-strict",
    } <= options
    assert not {"--prices", "--secret", "--latency", "--teacher.base-url"} & options
    assert "Set in a --config file only: prices, secret." in parser.format_help()


def test_defaults_then_file_then_flags(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: out\nmax_tokens: 64\nmode: slow\nteacher: {model: file-model}\n")
    settings = _run(["--config", str(config), "--max-tokens", "32", "--filters.no-dedupe"])
    assert settings.max_tokens == 32  # flag over file
    assert settings.mode == "slow"  # file over default
    assert settings.teacher.model == "file-model"
    assert settings.teacher.base_url == "http://127.0.0.1:8000/v1"  # default
    assert settings.filters.dedupe is False
    assert settings.filters.min_chars == 50
    assert settings.judge is None


def test_flags_alone_build_nested_sections():
    settings = _run(
        [
            "--output-dir",
            "o",
            "--model",
            "m",
            "--judge-model",
            "j",
            "--filters.phrases",
            "a",
            "--filters.phrases",
            "b",
        ]
    )
    assert settings.teacher.model == "m" and settings.judge is not None and settings.judge.model == "j"
    assert settings.filters.phrases == ["a", "b"]  # a repeated flag replaces the default list
    assert settings.output_dir == Path("o")
    assert _run(["--output-dir", "o", "--model", "m", "--no-timing"]).latency is False


def test_a_bad_flag_value_is_blamed_on_the_flag(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: out\nteacher: {model: m}\nmax_tokens: 5\n")
    with pytest.raises(UserError) as raised:
        _run(["--config", str(config), "--max-tokens", "0", "--rpm", "-1"])
    lines = str(raised.value).splitlines()
    assert lines[0].startswith("--max-tokens: ") and "greater than or equal to 1" in lines[0]
    assert lines[1].startswith("--rpm: ")
    assert "c.yaml" not in str(raised.value)


def test_a_bad_file_value_is_blamed_on_its_line(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: out\nteacher: {model: m}\nmax_tokens: 0\nfilters:\n  min_chrs: 3\n")
    with pytest.raises(UserError) as raised:
        _run(["--config", str(config), "--rpm", "5"])
    message = str(raised.value)
    assert f"{config}:3: max_tokens: " in message
    assert f"{config}:5: filters.min_chrs: unknown key" in message


def test_a_missing_setting_names_its_flag():
    with pytest.raises(UserError, match=r"--output-dir required \(or `output_dir:` in a --config file\)"):
        _run(["--model", "m"])
    with pytest.raises(UserError, match=r"--model required \(or `teacher:` in a --config file\)"):
        _run(["--output-dir", "o"])


def test_help_shows_the_models_defaults():
    root, _ = _parser()
    text = root._subparsers._group_actions[0].choices["echo"].format_help()
    assert "answer length (default: 1024)" in text
    assert "where it goes (required)" in text
    assert "(default: on)" in text


def test_help_shows_the_default_a_section_really_gets():
    """A section's own default (here Filters(min_chars=10)) decides its fields' defaults, not the nested model."""

    class Tuned(BaseModel):
        model_config = ConfigDict(extra="forbid")

        filters: Filters = Field(default_factory=lambda: Filters(min_chars=10, phrases=["nope"]))

    parser = argparse.ArgumentParser(prog="t")
    ConfigFlags(Tuned, parser)
    text = " ".join(parser.format_help().split())
    assert "shortest answer (default: 10)" in text
    assert "(default: nope)" in text
    assert Tuned().filters.min_chars == 10


def test_abbreviations_are_errors(capsys: pytest.CaptureFixture[str]):
    root, _ = _parser()
    with pytest.raises(SystemExit) as raised:
        root.parse_args(["echo", "--output-dir", "o", "--mode", "fast", "--max-tok", "3"])
    assert raised.value.code == 2
    assert "unrecognized arguments: --max-tok" in capsys.readouterr().err


def test_every_distill_parser_refuses_abbreviations(capsys: pytest.CaptureFixture[str]):
    parser = build_parser()
    assert parser.allow_abbrev is False
    seen = 0
    pending = [parser]
    while pending:
        current = pending.pop()
        assert current.allow_abbrev is False, current.prog
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
        seen += 1
    assert seen > 10
    # `--samples` is not `--samples-per-input`: an error, not a guess.
    with pytest.raises(SystemExit) as raised:
        main(["generate", "--samples", "2", "--input", "x", "--output-dir", "y"])
    assert raised.value.code == 2
    assert "unrecognized arguments: --samples" in capsys.readouterr().err


def test_cli_reports_a_flag_error_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = [
        "generate",
        "--input",
        "in.jsonl",
        "--output-dir",
        str(tmp_path),
        "--model",
        "m",
        "--max-tokens",
        "0",
    ]
    code = main([*argv, "--base-url", "http://127.0.0.1:9/v1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("distill: error: --max-tokens: ")
    assert "config" not in err and "command line:" not in err


def test_bundled_config_names_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    for name in ("generate", "generate.yaml", "configs/generate.yaml"):
        path = local_or_bundled(name)
        assert path.is_file() and path.name == "generate.yaml"
    (tmp_path / "generate.yaml").write_text("model: mine\n")
    assert local_or_bundled("generate.yaml") == Path("generate.yaml")  # a real file comes first
    assert local_or_bundled("nothing-like-it.yaml") == Path("nothing-like-it.yaml")


def test_colliding_flags_fail_when_the_parser_is_built():
    class Twice(BaseModel):
        model: str = "a"
        teacher: Endpoint = Field(json_schema_extra={"flag_prefix": ""})

    with pytest.raises(argparse.ArgumentError, match="--model"):
        ConfigFlags(Twice, argparse.ArgumentParser())


def test_declared_flag_names_are_relative_to_their_section():
    class Run(BaseModel):
        generate: Settings

    parser = argparse.ArgumentParser()
    flags = ConfigFlags(Run, parser)
    options = {flag.option for flag in flags.flags}
    assert {
        "--generate.base-url",
        "--generate.judge-model",
        "--generate.timing",
        "--generate.max-tokens",
    } <= options
    assert "--generate.filters.min-chars" in options
    assert "--strict" in options  # declared with its dashes: the same flag at any depth
    args = parser.parse_args(["--generate.output-dir", "o", "--generate.model", "m", "--generate.no-timing"])
    run = flags.load(None, args).config
    assert run.generate.latency is False and run.generate.teacher.model == "m"
