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


def test_a_key_written_twice_is_refused_naming_both_lines(tmp_path):
    path = write(tmp_path, "model: a\nlimits:\n  rpm: 10\n  rpm: 20\n")
    with pytest.raises(UserError, match=rf"^{path}:4: rpm: written twice in one mapping \(first on line 3\)"):
        load_config(Example, path)


def test_an_alias_bomb_is_refused_before_it_is_built(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10**9 values
    path = write(tmp_path, "\n".join(lines) + "\nmodel: m\n")
    with pytest.raises(UserError, match=rf"{path}:\d+: the document expands to more than 100,000 values"):
        load_config(Example, path)
    small = write(tmp_path, "base: &b {rpm: 5}\n")  # a few aliases are fine
    with pytest.raises(UserError, match="base: unknown key"):
        load_config(Example, small)


def test_a_huge_or_binary_config_is_refused(tmp_path):
    path = write(tmp_path, "model: m\n" + "#" * (1 << 20))
    with pytest.raises(UserError, match="config file is 1,048,585 bytes; a config is at most 1,048,576"):
        load_config(Example, path)
    path.write_bytes(b"model: \xff\xfe\n")
    with pytest.raises(UserError, match="config file is not UTF-8 text"):
        load_config(Example, path)


class Numbers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_tokens: int = 5
    budget: float | None = None
    stream: bool = False
    limits: Limits = Limits()
    prices: dict[str, Limits] = {}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("max_tokens: true\n", ":1: max_tokens: needs a number, got true"),
        ("budget: yes\n", ":1: budget: needs a number, got true"),
        ("limits:\n  rpm: on\n", ":2: limits.rpm: needs a number, got true"),
        ("prices:\n  gpt:\n    rpm: false\n", ":3: prices.gpt.rpm: needs a number, got false"),
    ],
)
def test_a_boolean_where_a_number_belongs_is_refused(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=rf"^{path}{where}"):
        load_config(Numbers, path)
    assert load_config(Numbers, write(tmp_path, "stream: true\nmax_tokens: 7\n")).max_tokens == 7


class Layered(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "m"
    tags: list[str] = []
    limits: Limits = Limits()
    prices: dict[str, Limits] = {}


def test_extends_lays_the_file_over_its_base(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "model: base\ntags: [a, b]\nlimits:\n  rpm: 10\nprices:\n  gpt: {rpm: 1}\n  o1: {rpm: 2}\n",
        encoding="utf-8",
    )
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\ntags: [c]\nprices:\n  o1: {rpm: 3}\n", encoding="utf-8")
    config = load_config(Layered, child)
    assert config.model == "base" and config.limits.rpm == 10  # kept from the base
    assert config.tags == ["c"]  # a list replaces the base's
    assert {name: limits.rpm for name, limits in config.prices.items()} == {
        "gpt": 1,
        "o1": 3,
    }  # merged per key
    assert load_config(Layered, child, {"model": "flag"}).model == "flag"  # flags still win


def _refused(model: type[BaseModel], config: Path, text: str, message: str) -> None:
    config.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        load_config(model, config)


def test_errors_name_the_file_each_key_came_from(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("model: base\nlimits:\n  rpm: -1\n", encoding="utf-8")
    child = tmp_path / "child.yaml"
    _refused(
        Layered, child, "extends: base.yaml\nmodel: child\n", rf"^{base}:3: limits.rpm: .* greater than 0"
    )
    # the base's bad rpm is written over, so only the child's typo remains
    _refused(
        Layered,
        child,
        "extends: base.yaml\nlimits:\n  rpm: 5\n  rmp: 6\n",
        rf"^{child}:4: limits.rmp: unknown key",
    )
    _refused(
        Numbers, child, "extends: base.yaml\nlimits: {rpm: yes}\n", rf"^{child}:2: limits.rpm: needs a number"
    )


def test_a_missing_base_or_a_cycle_is_refused_at_the_extends_line(tmp_path):
    child = tmp_path / "child.yaml"
    _refused(
        Layered, child, "model: m\nextends: absent.yaml\n", rf"^{child}:2: extends: absent.yaml: no such file"
    )
    _refused(Layered, child, "extends: [a]\n", rf"^{child}:1: extends: needs the name of another config file")
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("model: b\nextends: a.yaml\n", encoding="utf-8")
    with pytest.raises(
        UserError, match=r"b.yaml:2: extends: a.yaml makes a cycle \(a.yaml -> b.yaml -> a.yaml\)"
    ):
        load_config(Layered, tmp_path / "a.yaml")


def test_extends_reaches_a_bundled_config(tmp_path):
    from distill.pipeline.config import load_run_config

    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: demo\noutput_dir: runs/mine\ntrain:\n  epochs: 2\n", encoding="utf-8")
    demo, config = load_run_config("demo").config, load_run_config(mine).config
    assert str(config.output_dir) == "runs/mine" and config.train.epochs == 2
    assert config.task == demo.task and config.train.learning_rate == demo.train.learning_rate == 2e-3
