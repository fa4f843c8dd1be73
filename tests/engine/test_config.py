"""GenerateConfig: defaults, file:line:key errors, and where an API key may be missing."""

from __future__ import annotations

import json

import pytest
from distill.engine.config import GenerateConfig, load_generate_config

from distill.errors import UserError

REQUIRED = {
    "input": "in.jsonl",
    "output_dir": "out",
    "teacher": {"base_url": "http://127.0.0.1:8000/v1", "model": "m"},
}


def test_defaults_follow_the_seed():
    config = GenerateConfig(**REQUIRED)
    assert (config.temperature_first, config.temperature_rest) == (0.3, 0.8)
    assert config.samples_per_input == 1 and config.template == "zh"
    assert config.filters.min_output_chars == 50 and config.filters.max_instruction_similarity == 0.8
    assert "很抱歉" in config.filters.refusal_phrases and "I'm sorry" in config.filters.refusal_phrases
    assert config.teacher.api_key_env == "OPENAI_API_KEY" and not config.send_seed


def test_unknown_key_names_file_line_and_key(tmp_path):
    path = tmp_path / "generate.yaml"
    path.write_text(
        "input: in.jsonl\noutput_dir: out\nteacher: {base_url: 'http://127.0.0.1:1', model: m}\nfilters:\n"
        "  min_output_chars: 10\n  dedup: true\n"
    )
    with pytest.raises(UserError) as error:
        load_generate_config(path, {})
    assert f"{path}:6: filters.dedup: unknown key" in str(error.value)


def test_bad_value_names_its_key_and_flags_override_the_file(tmp_path):
    path = tmp_path / "generate.yaml"
    path.write_text(
        "input: in.jsonl\noutput_dir: out\nteacher:\n  base_url: http://127.0.0.1:1\n  model: m\n"
        "  rpm: 60\nsamples_per_input: 0\n"
    )
    with pytest.raises(UserError, match=r"generate.yaml:7: samples_per_input: Input should be greater"):
        load_generate_config(path, {})
    # A flag for one teacher key replaces that key only; the file's other teacher keys stay.
    config = load_generate_config(path, {"samples_per_input": 3, "teacher": {"model": "m2", "rpm": None}})
    assert config.samples_per_input == 3 and config.teacher.model == "m2" and config.teacher.rpm == 60
    with pytest.raises(UserError, match=r"command line: teacher.rpm: Input should be greater"):
        load_generate_config(None, {**REQUIRED, "teacher": {**REQUIRED["teacher"], "rpm": -1}})


def test_budget_without_a_price_is_refused():
    with pytest.raises(ValueError, match="budget is set but the teacher has no price"):
        GenerateConfig(**REQUIRED, budget=5)
    price = {"input_per_million": 1, "output_per_million": 2}
    config = GenerateConfig(**{**REQUIRED, "teacher": {**REQUIRED["teacher"], "price": price}}, budget=5)
    assert config.teacher.price.output_per_million == 2


def test_the_example_config_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = load_generate_config(root / "configs" / "generate.yaml", {})
    assert config.budget is not None and config.teacher.price is not None and config.samples_per_input == 2
    assert (root / config.input).exists()


def test_answer_schema_inline_or_from_a_file_and_checked(tmp_path):
    from distill.engine.config import GenerateConfig

    base = {
        "input": "in.jsonl",
        "output_dir": "run",
        "teacher": {"model": "m", "base_url": "http://127.0.0.1:9/v1"},
    }
    schema = {"type": "object", "required": ["a"]}
    assert GenerateConfig(**base, answer_schema=schema).answer_schema == schema
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    assert GenerateConfig(**base, answer_schema=str(tmp_path / "schema.json")).answer_schema == schema
    with pytest.raises(ValueError, match="not a valid JSON schema"):
        GenerateConfig(**base, answer_schema={"type": "no such type"})
    with pytest.raises(ValueError, match="cannot read the schema file"):
        GenerateConfig(**base, answer_schema=str(tmp_path / "absent.json"))
