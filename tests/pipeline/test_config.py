"""`distill run` configs fail early, naming the file, the line and the nested key — also inside the sections
that are the engine's, the trainer's and the evaluator's own config models."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from distill.endpoint import Endpoint
from distill.errors import UserError
from distill.pipeline import stage_generate, stage_train
from distill.pipeline.config import load_run_config
from distill.pipeline.context import StageContext
from distill.pipeline.services import Services
from distill.pipeline.task import task_view

REPO = Path(__file__).resolve().parents[2]


def _load(tmp_path: Path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return load_run_config(path)


def _context(tmp_path: Path, text: str) -> StageContext:
    loaded = _load(tmp_path, text)
    services = Services(loaded.config, tmp_path / "run", contextlib.ExitStack())
    return StageContext(loaded=loaded, run_dir=tmp_path / "run", services=services, task=task_view(loaded))


def test_unknown_top_level_key_names_file_and_line(tmp_path):
    with pytest.raises(UserError, match=r"run\.yaml:4: task\.trian: unknown key"):
        _load(tmp_path, "output_dir: out\ntask:\n  kind: contracts\n  trian: 5\n")


def test_shared_seeds_are_refused(tmp_path):
    with pytest.raises(UserError, match="must differ"):
        _load(tmp_path, "task:\n  train_seed: 4\n  eval_seed: 4\n")


def test_api_teacher_needs_an_endpoint(tmp_path):
    with pytest.raises(UserError, match=r"teacher: .*kind: api needs endpoint"):
        _load(tmp_path, "teacher:\n  kind: api\n")
    with pytest.raises(UserError, match=r"run\.yaml:4: teacher\.endpoint\.base_url: .*must be an http"):
        _load(
            tmp_path, "teacher:\n  kind: api\n  endpoint:\n    base_url: api.openai.com\n    model: gpt-4o\n"
        )
    loaded = _load(
        tmp_path,
        "teacher:\n  kind: api\n  endpoint: {base_url: 'https://api.example.com/v1', model: gpt-4o}\n",
    )
    assert loaded.config.teacher.endpoint.model == "gpt-4o"


def test_engine_section_errors_fail_at_load_with_file_and_line(tmp_path):
    with pytest.raises(UserError) as caught:
        _load(
            tmp_path, "output_dir: out\ngenerate:\n  teacher:\n    concurrency: 16\n  samples_per_input: 0\n"
        )
    assert re.search(
        r"run\.yaml:5: generate\.samples_per_input: .*greater than or equal to 1", str(caught.value)
    )
    with pytest.raises(UserError, match=r"run\.yaml:3: generate\.teacher\.concurrency: .*greater than"):
        _load(tmp_path, "generate:\n  teacher:\n    concurrency: 0\n")
    with pytest.raises(UserError, match=r"run\.yaml:4: generate\.filters\.dedup: unknown key"):
        _load(tmp_path, "generate:\n  max_tokens: 16\n  filters:\n    dedup: false\n")


def test_sections_may_not_set_what_the_pipeline_decides(tmp_path):
    with pytest.raises(
        UserError, match=r"run\.yaml:3: generate\.teacher\.base_url: .*set by `distill run` itself"
    ):
        _load(tmp_path, "generate:\n  teacher:\n    base_url: http://example.com/v1\n")
    with pytest.raises(UserError, match=r"run\.yaml:2: generate\.input: .*set by `distill run` itself"):
        _load(tmp_path, "generate:\n  input: x.jsonl\n")
    with pytest.raises(
        UserError, match=r"run\.yaml:3: evaluate\.judge\.model: .*set by `distill run` itself"
    ):
        _load(tmp_path, "evaluate:\n  judge:\n    model: gpt-4o\n")
    with pytest.raises(UserError, match=r"run\.yaml:3: train\.base_model: .*set by `distill run` itself"):
        _load(tmp_path, "train:\n  epochs: 1\n  base_model: other\n")


def test_evaluator_and_trainer_sections_are_their_own_models(tmp_path):
    with pytest.raises(UserError, match=r"run\.yaml:4: evaluate\.latency\.concurency: unknown key"):
        _load(tmp_path, "evaluate:\n  latency:\n    requests: 8\n    concurency: 2\n")
    with pytest.raises(UserError, match=r"run\.yaml:3: evaluate\.metrics\.normalisers: .*unknown normaliser"):
        _load(tmp_path, "evaluate:\n  metrics:\n    normalisers: [nfkc, bogus]\n")
    with pytest.raises(UserError, match=r"run\.yaml:2: train\.lora_rank: .*greater than or equal to 1"):
        _load(tmp_path, "train:\n  lora_rank: 0\n")
    loaded = _load(
        tmp_path, "evaluate:\n  judge:\n    mode: pairwise\ntrain:\n  lora_target: q_proj,v_proj\n"
    )
    assert loaded.config.evaluate.judge.mode == "pairwise"
    assert loaded.config.train.lora_target == ["q_proj", "v_proj"]  # the trainer's own field validator ran


def test_cross_field_rules_of_the_trainer_fail_before_any_stage(tmp_path):
    context = _context(tmp_path, "train:\n  max_length: 4096\n  token_budget: 2048\n")
    with pytest.raises(UserError, match=r"run\.yaml:1: train: .*token_budget"):
        stage_train.check(context)


def test_the_teacher_endpoint_gets_the_sections_limits(tmp_path):
    context = _context(tmp_path, "generate:\n  max_tokens: 300\n  teacher:\n    concurrency: 5\n")
    local = Endpoint(base_url="http://127.0.0.1:9/v1", model="reference-teacher", api_key_env=None)
    config = stage_generate.generate_config(context, local)
    assert config.teacher.concurrency == 5 and config.teacher.model == "reference-teacher"
    assert config.max_tokens == 300 and config.input == tmp_path / "run" / "data" / "train.jsonl"


def test_training_on_reasoning_gets_room_for_the_answer_unless_the_section_says_otherwise(tmp_path):
    assert stage_train.train_config(_context(tmp_path, "with_thinking: false\n")).max_length == 1024
    assert stage_train.train_config(_context(tmp_path, "with_thinking: true\n")).max_length == 2048
    chosen = _context(tmp_path, "with_thinking: true\ntrain:\n  max_length: 1536\n")
    assert stage_train.train_config(chosen).max_length == 1536


def test_shipped_configs_are_valid(tmp_path):
    for name in (
        "demo.yaml",
        "demo-full.yaml",
        "demo-reasoning.yaml",
        "demo-tiny.yaml",
        "demo-smollm2-teacher.yaml",
    ):
        loaded = load_run_config(REPO / "configs" / name)
        assert loaded.config.student == "smollm2-135m-instruct"


def test_a_config_extending_another_keeps_each_files_paths_and_lines(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "base.yaml").write_text(
        "task:\n  kind: file\n  inputs: in.jsonl\n  eval_split: 0.2\n  instruction_file: instruction.txt\n"
        "generate:\n  teacher:\n    concurrency: 0\n",
        encoding="utf-8",
    )
    child = tmp_path / "run.yaml"
    child.write_text("extends: shared/base.yaml\ntask:\n  inputs: mine.jsonl\n", encoding="utf-8")
    with pytest.raises(
        UserError, match=rf"^{re.escape(str(shared / 'base.yaml'))}:8: generate.teacher.concurrency"
    ):
        load_run_config(child)
    (shared / "base.yaml").write_text(
        (shared / "base.yaml").read_text(encoding="utf-8").replace("concurrency: 0", "concurrency: 4"),
        encoding="utf-8",
    )
    task = load_run_config(child).config.task
    assert Path(task.instruction_file) == shared / "instruction.txt"  # written in the base: beside the base
    assert Path(task.inputs) == tmp_path / "mine.jsonl"  # written in the child: beside the child
