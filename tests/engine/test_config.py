"""GenerateConfig: defaults, file:line:key errors, and where an API key may be missing."""

from __future__ import annotations

import pytest
from distill.engine.config import GenerateConfig, is_loopback, load_generate_config, resolve_api_key

from distill.errors import UserError

REQUIRED = {"input": "in.jsonl", "output_dir": "out", "model": "m"}


def test_defaults_follow_the_seed():
    config = GenerateConfig(**REQUIRED)
    assert (config.temperature_first, config.temperature_rest) == (0.3, 0.8)
    assert config.samples_per_input == 1 and config.template == "zh"
    assert config.filters.min_output_chars == 50 and config.filters.max_instruction_similarity == 0.8
    assert "很抱歉" in config.filters.refusal_phrases and "I'm sorry" in config.filters.refusal_phrases
    assert config.api_key_env == "OPENAI_API_KEY" and not config.send_seed


def test_unknown_key_names_file_line_and_key(tmp_path):
    path = tmp_path / "generate.yaml"
    path.write_text(
        "input: in.jsonl\noutput_dir: out\nmodel: m\nfilters:\n  min_output_chars: 10\n  dedup: true\n"
    )
    with pytest.raises(UserError) as error:
        load_generate_config(path, {})
    assert f"{path}:6: filters.dedup: unknown key" in str(error.value)


def test_bad_value_names_its_key_and_flags_override_the_file(tmp_path):
    path = tmp_path / "generate.yaml"
    path.write_text("input: in.jsonl\noutput_dir: out\nmodel: m\nsamples_per_input: 0\n")
    with pytest.raises(UserError, match=r"generate.yaml:4: samples_per_input: Input should be greater"):
        load_generate_config(path, {})
    config = load_generate_config(path, {"samples_per_input": 3, "model": None})
    assert config.samples_per_input == 3 and config.model == "m"


def test_budget_without_a_price_is_refused():
    with pytest.raises(ValueError, match="prices has no entry for model 'm'"):
        GenerateConfig(**REQUIRED, budget=5)
    config = GenerateConfig(
        **REQUIRED, budget=5, prices={"m": {"input_per_million": 1, "output_per_million": 2}}
    )
    assert config.price.output_per_million == 2


def test_base_url_must_be_http():
    with pytest.raises(ValueError, match="must be an http"):
        GenerateConfig(**REQUIRED, base_url="api.openai.com")


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://localhost/v1", True),
        ("http://[::1]:9/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.5/v1", False),
    ],
)
def test_loopback_detection(url, local):
    assert is_loopback(url) is local


def test_missing_key_is_fine_on_loopback_only(monkeypatch):
    monkeypatch.delenv("DISTILL_TEST_KEY", raising=False)
    local = GenerateConfig(**REQUIRED, api_key_env="DISTILL_TEST_KEY")
    assert resolve_api_key(local) is None
    remote = GenerateConfig(**REQUIRED, api_key_env="DISTILL_TEST_KEY", base_url="https://api.example.com/v1")
    with pytest.raises(UserError, match="environment variable DISTILL_TEST_KEY is not set"):
        resolve_api_key(remote)
    with pytest.raises(UserError, match="api_key_env is null"):
        resolve_api_key(GenerateConfig(**REQUIRED, api_key_env=None, base_url="https://api.example.com/v1"))
    monkeypatch.setenv("DISTILL_TEST_KEY", "sk-test")
    assert resolve_api_key(remote) == "sk-test"


def test_the_example_config_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = load_generate_config(root / "configs" / "generate.yaml", {})
    assert config.budget is not None and config.price is not None and config.samples_per_input == 2
    assert (root / config.input).exists()
