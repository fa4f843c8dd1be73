"""Collectives run where the process group's backend reduces: CUDA tensors under NCCL, CPU tensors under gloo."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed
import torch.multiprocessing
from distill.trainer.distributed import Dist, backend_for, collective_device


def test_the_reduction_device_follows_the_backend():
    gpu = torch.device("cuda", 1)
    assert backend_for(gpu) == "nccl" and backend_for(torch.device("cpu")) == "gloo"
    assert collective_device("nccl", gpu) == gpu  # NCCL accepts CUDA tensors only: this rank's own GPU
    assert collective_device("NCCL", gpu) == gpu
    assert collective_device("gloo", gpu) == torch.device("cpu")
    assert collective_device("gloo", torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA tensors only"):
        collective_device("nccl", torch.device("cpu"))


def test_without_a_process_group_values_pass_through():
    assert Dist().sum([1.5, 2.0]) == [1.5, 2.0] and Dist().any(True)


def _rank_sums(rank: int, port: int, results) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    try:
        dist = Dist(
            rank=rank,
            world=2,
            deepspeed=True,
            reduce_on=collective_device(torch.distributed.get_backend(), torch.device("cpu")),
        )
        results[rank] = (dist.sum([rank + 0.5, 10.0]), dist.any(rank == 1), dist.any(False))
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_ranks_sum_and_agree():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = torch.multiprocessing.Manager().dict()
    torch.multiprocessing.spawn(_rank_sums, args=(port, results), nprocs=2, join=True)
    assert results[0] == results[1] == ([2.0, 20.0], True, False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: NCCL needs one")
def test_nccl_sums_cuda_tensors(tmp_path):
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    torch.distributed.init_process_group(
        "nccl", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        dist = Dist(deepspeed=True, reduce_on=collective_device(torch.distributed.get_backend(), device))
        assert dist.reduce_on.type == "cuda" and dist.sum([1.25, 2.0]) == [1.25, 2.0]
    finally:
        torch.distributed.destroy_process_group()
