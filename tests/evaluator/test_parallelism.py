"""Evaluation on several GPUs: tensor/data parallelism is validated in config, passed through to vLLM, and refused
with a clear message on the CPU build installed here (nothing is started when it is refused)."""

from __future__ import annotations

import pytest
from distill.evaluator.config import load_eval_config
from distill.evaluator.vllm_server import (
    gpu_groups,
    parallelism_problem,
    serve_vllm,
    server_command,
    vllm_is_cpu_build,
)

from distill.errors import UserError

BASE = "eval_set: e.jsonl\noutput_dir: o\nstudents: [{name: a}]\n"

cpu_build = pytest.mark.skipif(not vllm_is_cpu_build(), reason="checks the CPU build's refusal")


def _load(tmp_path, text):
    path = tmp_path / "eval.yaml"
    path.write_text(BASE + text, encoding="utf-8")
    return load_eval_config(path)


@cpu_build
@pytest.mark.parametrize(
    "setting",
    [
        "{tensor_parallel_size: 2}",
        "{data_parallel_size: 4}",
        "{tensor_parallel_size: 2, data_parallel_size: 2}",
    ],
)
def test_the_cpu_build_refuses_parallelism_in_config(tmp_path, setting):
    with pytest.raises(UserError) as caught:
        _load(tmp_path, f"generation: {setting}\n")
    message = str(caught.value)
    assert "eval.yaml:4" in message and "generation" in message
    assert "CPU build" in message and "set both to 1" in message


def test_one_gpu_settings_are_accepted_and_bounds_checked(tmp_path):
    config = _load(tmp_path, "generation: {tensor_parallel_size: 1, data_parallel_size: 1}\n")
    assert config.generation.tensor_parallel_size == 1 and config.generation.data_parallel_size == 1
    with pytest.raises(UserError, match="tensor_parallel_size"):
        _load(tmp_path, "generation: {tensor_parallel_size: 0}\n")


@cpu_build
def test_transformers_backend_has_no_parallelism(tmp_path):
    with pytest.raises(UserError, match="vLLM backend only"):
        _load(tmp_path, "generation: {backend: transformers, data_parallel_size: 2}\n")


@cpu_build
def test_serve_vllm_refuses_before_starting_anything(tmp_path):
    with pytest.raises(UserError, match="CPU build"):
        with serve_vllm(tmp_path / "no-model", tensor_parallel_size=2, log_path=tmp_path / "log"):
            pass
    assert not (tmp_path / "log").exists()
    assert parallelism_problem(1, 1) is None


def test_the_server_command_passes_both_through():
    command = server_command(
        "/m",
        8000,
        served_model_name="s",
        lora_modules=None,
        dtype="bfloat16",
        max_model_len=2048,
        kv_cache_mib=None,
        tensor_parallel_size=4,
        data_parallel_size=2,
    )
    joined = " ".join(command)
    assert "--tensor-parallel-size 4" in joined and "--data-parallel-size 2" in joined
    plain = " ".join(
        server_command(
            "/m",
            8000,
            served_model_name="s",
            lora_modules=None,
            dtype="bfloat16",
            max_model_len=2048,
            kv_cache_mib=None,
        )
    )
    assert "parallel" not in plain


def test_each_offline_engine_gets_its_own_gpus():
    assert gpu_groups(2, 2, None) == ["0,1", "2,3"]
    assert gpu_groups(1, 3, "4, 5,6,7") == ["4", "5", "6"]
    assert gpu_groups(4, 1, None) == ["0,1,2,3"]
    with pytest.raises(UserError, match="needs 4 GPUs"):
        gpu_groups(2, 2, "0,1")
