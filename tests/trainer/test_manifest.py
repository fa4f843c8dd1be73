"""read_manifest: the evaluator's entry point refuses a missing or incomplete manifest by name."""

from __future__ import annotations

import json

import pytest
from distill.trainer.manifest import MANIFEST_NAME, REQUIRED, read_manifest, write_manifest

from distill.errors import UserError


def test_round_trip_and_refusals(tmp_path):
    manifest = {key: f"value-{key}" for key in REQUIRED}
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    with pytest.raises(UserError, match="no trainer manifest"):
        read_manifest(tmp_path / "elsewhere")
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"base_model": "x"}))
    with pytest.raises(UserError, match="base_model_dir: missing field"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{\n  broken")
    with pytest.raises(UserError, match=f"{MANIFEST_NAME}:2: not valid JSON"):
        read_manifest(tmp_path)
    with pytest.raises(ValueError, match="manifest lacks"):
        write_manifest(tmp_path, {"base_model": "x"})
