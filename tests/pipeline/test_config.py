"""`distill run` configs fail early, naming the file, the line and the nested key — also inside the
sections that are passed through to the engine and the evaluator."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from distill.errors import UserError
from distill.pipeline import step_evaluate, step_train
from distill.pipeline.config import load_run_config
from distill.pipeline.run import Services
from distill.pipeline.servers import PLACEHOLDER_ENDPOINT
from distill.pipeline.steps import StageContext

REPO = Path(__file__).resolve().parents[2]


def _context(tmp_path: Path, text: str) -> StageContext:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_run_config(path)
    services = Services(loaded, tmp_path / "run", contextlib.ExitStack())
    return StageContext(loaded=loaded, run_dir=tmp_path / "run", services=services, records={})


def test_unknown_top_level_key_names_file_and_line(tmp_path):
    with pytest.raises(UserError, match=r"run\.yaml:3: contracts\.trian: unknown key"):
        _context(tmp_path, "output_dir: out\ncontracts:\n  trian: 5\n")


def test_shared_seeds_are_refused(tmp_path):
    with pytest.raises(UserError, match="must differ"):
        _context(tmp_path, "contracts:\n  train_seed: 4\n  eval_seed: 4\n")


def test_api_teacher_needs_an_endpoint(tmp_path):
    with pytest.raises(UserError, match=r"teacher: .*kind: api needs endpoint"):
        _context(tmp_path, "teacher:\n  kind: api\n")
    with pytest.raises(UserError, match=r"run\.yaml:4: teacher\.endpoint\.base_url: .*must be an http"):
        _context(
            tmp_path, "teacher:\n  kind: api\n  endpoint:\n    base_url: api.openai.com\n    model: gpt-4o\n"
        )
    context = _context(
        tmp_path,
        "teacher:\n  kind: api\n  endpoint: {base_url: 'https://api.example.com/v1', model: gpt-4o}\n",
    )
    assert context.config.teacher.endpoint.model == "gpt-4o"


def test_engine_section_errors_point_into_the_run_config(tmp_path):
    context = _context(
        tmp_path, "output_dir: out\ngenerate:\n  teacher:\n    concurrency: 16\n  samples_per_input: 0\n"
    )
    with pytest.raises(UserError) as caught:
        context.generate_config(PLACEHOLDER_ENDPOINT)
    assert re.search(
        r"run\.yaml:5: generate\.samples_per_input: .*greater than or equal to 1", str(caught.value)
    )
    context = _context(tmp_path, "generate:\n  teacher:\n    concurrency: 0\n")
    with pytest.raises(UserError, match=r"run\.yaml:3: generate\.teacher\.concurrency: .*greater than"):
        context.generate_config(PLACEHOLDER_ENDPOINT)
    config = _context(tmp_path, "generate:\n  teacher:\n    concurrency: 5\n").generate_config(
        PLACEHOLDER_ENDPOINT
    )
    assert config.teacher.concurrency == 5 and config.teacher.model == PLACEHOLDER_ENDPOINT.model


def test_engine_section_may_not_choose_the_endpoint(tmp_path):
    context = _context(tmp_path, "generate:\n  teacher:\n    base_url: http://example.com/v1\n")
    with pytest.raises(
        UserError, match=r"run\.yaml:3: generate\.teacher\.base_url: set by `distill run` itself"
    ):
        context.generate_config(PLACEHOLDER_ENDPOINT)
    context = _context(tmp_path, "generate:\n  input: x.jsonl\n")
    with pytest.raises(UserError, match=r"run\.yaml:2: generate\.input: set by `distill run` itself"):
        context.generate_config(PLACEHOLDER_ENDPOINT)


def test_evaluator_section_is_validated_by_the_evaluator(tmp_path):
    context = _context(tmp_path, "evaluate:\n  latency:\n    requests: 8\n    concurency: 2\n")
    with pytest.raises(UserError, match=r"run\.yaml:4: evaluate\.latency\.concurency: unknown key"):
        step_evaluate.validate_section(context)
    context = _context(tmp_path, "evaluate:\n  judge:\n    model: gpt-4o\n")
    with pytest.raises(UserError, match=r"run\.yaml:3: evaluate\.judge\.model: set by `distill run` itself"):
        step_evaluate.validate_section(context)


def test_training_on_reasoning_gets_room_for_the_answer_unless_the_section_says_otherwise(tmp_path):
    assert step_train.train_config(_context(tmp_path, "with_thinking: false\n")).max_length == 1024
    assert step_train.train_config(_context(tmp_path, "with_thinking: true\n")).max_length == 2048
    chosen = _context(tmp_path, "with_thinking: true\ntrain:\n  max_length: 1536\n")
    assert step_train.train_config(chosen).max_length == 1536


def test_shipped_configs_are_valid(tmp_path):
    for name in ("demo.yaml", "demo-full.yaml", "demo-tiny.yaml", "demo-smollm2-teacher.yaml"):
        loaded = load_run_config(REPO / "configs" / name)
        assert loaded.config.student == "smollm2-135m-instruct"
