"""Training across nodes: `distill train --nnodes 2 --node-rank K --master-addr --master-port` (torchrun's
rendezvous), run here as two "nodes" of one gloo process each, sharing the output directory as nodes share a
disk. The adapter must equal the one a single process trains on the same data and seed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from distill.trainer.manifest import read_manifest
from distill.trainer.train import run_training

from tests.trainer.test_launch import CONFIGS, _config, _weights


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node(rank: int, port: int, data: Path, tiny_model: Path, output: Path, stage: int) -> subprocess.Popen:
    flags = {
        "--data": data,
        "--base-model": tiny_model,
        "--output-dir": output,
        "--epochs": 1,
        "--per-device-batch-size": 2,
        "--gradient-accumulation-steps": 1,
        "--learning-rate": 1e-3,
        "--val-size": 0.0,
        "--max-length": 256,
        "--token-budget": 512,
        "--eval-steps": 3,
        "--save-steps": 2,
        "--deepspeed": CONFIGS / f"ds_zero{stage}.json",
        "--nproc": 1,
        "--nnodes": 2,
        "--node-rank": rank,
        "--master-addr": "127.0.0.1",
        "--master-port": port,
    }
    argv = [sys.executable, "-m", "distill", "train"] + [str(part) for item in flags.items() for part in item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two "nodes" on two cores
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_two_nodes_train_the_single_process_adapter(stage, records, tiny_model, tmp_path):
    data = records(tmp_path / "records.jsonl", 16)
    output = tmp_path / f"two-nodes-zero{stage}"
    port = _free_port()
    nodes = [_node(rank, port, data, tiny_model, output, stage) for rank in (0, 1)]
    logs = []
    for node in nodes:
        try:
            logs.append(node.communicate(timeout=600)[0])
        finally:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], "\n\n".join(logs)
    adapter = output / "adapter"
    assert logs[0].strip().endswith(str(adapter))
    manifest = read_manifest(adapter)
    assert manifest["processes"] == 2 and manifest["steps"] == 4
    assert (output / "checkpoints" / "step-000002" / "trainer_state.json").is_file()

    # One process, the same samples per step (batch 2 × accumulation 2), the same seed.
    single = run_training(_config(tiny_model, data, tmp_path / "single", gradient_accumulation_steps=2))
    nodes_weights, single_weights = _weights(adapter), _weights(single)
    assert nodes_weights.keys() == single_weights.keys()
    for key, tensor in nodes_weights.items():
        torch.testing.assert_close(tensor, single_weights[key], rtol=0, atol=2e-5)
    assert [round(loss, 4) for _, loss in manifest["loss_curve"]["train"]] == [
        round(loss, 4) for _, loss in read_manifest(single)["loss_curve"]["train"]
    ]
