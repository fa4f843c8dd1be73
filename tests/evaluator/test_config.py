"""The shipped example config validates; mistakes are reported with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from distill.evaluator.config import load_eval_config

from distill.errors import UserError

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "eval.yaml"


def test_the_example_config_is_valid():
    config = load_eval_config(EXAMPLE)
    assert [s.name for s in config.students] == ["distilled", "base"]
    assert config.roi.calls_per_month == 1_000_000 and config.roi.win_margin == 0.1
    assert config.metrics.field_normalisers["金额"] == ["nfkc", "number"]


def test_overrides_win_over_the_file():
    config = load_eval_config(EXAMPLE, {"limit": 5, "output_dir": "elsewhere", "eval_set": None})
    assert config.limit == 5 and str(config.output_dir) == "elsewhere"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "eval_set: e.jsonl\noutput_dir: o\nstudents: [{name: a}]\ntypo_key: 1\n",
            "bad.yaml:4: typo_key: unknown key",
        ),
        ("eval_set: e.jsonl\noutput_dir: o\nstudents:\n  - {name: a}\n  - {name: a}\n", "a appears twice"),
        (
            "eval_set: e.jsonl\noutput_dir: o\nstudents: [{name: a}]\nmetrics: {normalisers: [nfkc, soundex]}\n",
            "unknown normaliser 'soundex'",
        ),
        (
            "eval_set: e.jsonl\noutput_dir: o\nstudents: [{name: a}]\nlatency: {students: [b]}\n",
            "latency.students names no configured student: b",
        ),
        (
            "eval_set: e.jsonl\noutput_dir: o\nstudents: [{name: a}]\nteacher: {base_url: 'ftp://x', model: m}\n",
            "bad.yaml:4: teacher.base_url",
        ),
        ("eval_set: e.jsonl\noutput_dir: o\nstudents: []\n", "bad.yaml:3: students"),
    ],
)
def test_mistakes_name_file_line_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_eval_config(path)
    assert message in str(caught.value)
