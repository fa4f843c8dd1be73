"""The one endpoint model: URL and key-variable validation, loopback rule, where a key may be missing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from distill.config_files import load_config
from distill.endpoint import Endpoint, endpoint_identity, is_loopback, normalise_base_url, resolve_api_key
from distill.errors import UserError


def test_base_url_must_be_http_without_credentials():
    with pytest.raises(ValueError, match="must be an http"):
        Endpoint(base_url="api.openai.com", model="m")
    with pytest.raises(ValueError, match="must not hold credentials"):
        Endpoint(base_url="https://user:secret@api.example.com/v1", model="m")
    assert Endpoint(base_url="http://127.0.0.1:8000/v1/", model="m").base_url == "http://127.0.0.1:8000/v1"


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://127.0.0.2/v1", True),
        ("http://localhost/v1", True),
        ("http://[::1]:9/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.5/v1", False),
    ],
)
def test_loopback_detection(url, local):
    assert is_loopback(url) is local


@pytest.mark.parametrize(
    ("url", "identity"),
    [
        ("http://127.0.0.1:8000/v1", "127.0.0.1"),
        ("http://127.0.0.2:8000/v1", "127.0.0.2"),
        ("http://localhost:9/v1", "localhost"),
        ("http://10.0.0.5:8000/v1", "10.0.0.5:8000"),
        ("https://api.openai.com/v1", "api.openai.com"),
    ],
)
def test_identity_leaves_out_only_a_loopback_port(url, identity):
    assert endpoint_identity(url) == identity


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"),
        ("http://127.0.0.1:8000/v1/chat/completions", "http://127.0.0.1:8000/v1"),
    ],
)
def test_normalise_base_url(given, expected):
    assert normalise_base_url(given) == expected


def test_missing_key_is_fine_on_loopback_only(monkeypatch):
    monkeypatch.delenv("DISTILL_TEST_KEY", raising=False)
    local = Endpoint(base_url="http://127.0.0.1:8000/v1", model="m", api_key_env="DISTILL_TEST_KEY")
    assert resolve_api_key(local) is None
    remote = Endpoint(base_url="https://api.example.com/v1", model="m", api_key_env="DISTILL_TEST_KEY")
    with pytest.raises(UserError, match="environment variable DISTILL_TEST_KEY is not set"):
        resolve_api_key(remote)
    with pytest.raises(UserError, match="api_key_env is null"):
        resolve_api_key(Endpoint(base_url="https://api.example.com/v1", model="m", api_key_env=None))
    monkeypatch.setenv("DISTILL_TEST_KEY", "sk-test")
    assert resolve_api_key(remote) == "sk-test"


def test_a_key_given_where_the_variable_name_belongs_is_refused_without_printing_it(tmp_path, capsys):
    key = "sk-proj-Abc123Def456Ghi789Jkl012Mno345"
    path = tmp_path / "generate.yaml"
    path.write_text(f"base_url: https://api.example.com/v1\nmodel: m\napi_key_env: {key}\n")
    with pytest.raises(UserError) as caught:
        load_config(Endpoint, path)
    message = str(caught.value)
    assert f"{path}:3: api_key_env:" in message and "looks like a key itself" in message
    assert key not in message and key[:12] not in message
    # A key made only of name characters passes the name check, and is caught when the variable is missing.
    plain = "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv"
    endpoint = Endpoint(base_url="https://api.example.com/v1", model="m", api_key_env=plain)
    with pytest.raises(UserError) as caught:
        resolve_api_key(endpoint)
    assert "looks like a key itself" in str(caught.value) and plain[:8] not in str(caught.value)
    assert key not in capsys.readouterr().err


def test_headers_cannot_carry_the_key_or_break_lines():
    with pytest.raises(ValidationError, match="set by distill"):
        Endpoint(base_url="http://127.0.0.1:1", model="m", headers={"Authorization": "Bearer sk-x"})
    with pytest.raises(ValidationError, match="line breaks"):
        Endpoint(base_url="http://127.0.0.1:1", model="m", headers={"X-Org": "a\r\nX-Evil: 1"})
    assert Endpoint(base_url="http://127.0.0.1:1", model="m", headers={"X-Org": "team"}).headers == {
        "X-Org": "team"
    }
