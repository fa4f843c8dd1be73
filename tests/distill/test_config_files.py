from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from distill.config_files import load_config
from distill.errors import UserError


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rpm: int = Field(default=60, gt=0)


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "m"
    limits: Limits = Limits()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_names_file_line_and_key(tmp_path):
    path = write(tmp_path, "model: gpt\nlimits:\n  rpm: 10\n  rmp: 5\n")
    with pytest.raises(UserError) as info:
        load_config(Example, path)
    assert str(info.value) == f"{path}:4: limits.rmp: unknown key"


def test_bad_value_names_its_line(tmp_path):
    path = write(tmp_path, "model: gpt\nlimits:\n  rpm: -3\n")
    with pytest.raises(UserError, match=rf"{path}:3: limits.rpm: Input should be greater than 0"):
        load_config(Example, path)


def test_flags_override_file_and_none_is_ignored(tmp_path):
    path = write(tmp_path, "model: from-file\n")
    assert load_config(Example, path, {"model": "from-flag"}).model == "from-flag"
    assert load_config(Example, path, {"model": None}).model == "from-file"


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"config.yaml:2: invalid YAML"):
        load_config(Example, write(tmp_path, "model: [a\nlimits: 1\n"))
    with pytest.raises(UserError, match="config file not found"):
        load_config(Example, tmp_path / "absent.yaml")


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(UserError, match=r":1: a config must be a mapping"):
        load_config(Example, write(tmp_path, "- a\n- b\n"))
