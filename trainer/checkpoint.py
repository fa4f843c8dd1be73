"""Checkpoints under ``<output_dir>/checkpoints/step-NNNNNN``, and resuming from the newest complete one.

A checkpoint holds the adapter weights, the optimizer and schedule (DeepSpeed's own files under ZeRO), the
RNG states and ``trainer_state.json``, written last: a directory without it is an interrupted save and is
ignored. The step plan is rebuilt from the seed, so resuming skips exactly the steps already taken.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.errors import UserError
from distill.files import write_atomically

STATE_FILE = "trainer_state.json"
_ADAPTER_FILE = "adapter_model.safetensors"


def checkpoints_dir(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def complete_checkpoints(output_dir: Path) -> list[Path]:
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [
        path for path in root.iterdir() if path.name.startswith("step-") and (path / STATE_FILE).is_file()
    ]
    return sorted(found, key=lambda path: int(path.name.split("-")[1]))


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    output_dir: Path, step: int, stepper, state: dict[str, Any], *, rank: int, keep: int, deepspeed: bool
) -> Path:
    """Every rank calls this (DeepSpeed saves its shards collectively); rank 0 writes the rest."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    directory = checkpoints_dir(output_dir) / f"step-{step:06d}"
    if rank == 0:
        shutil.rmtree(directory, ignore_errors=True)
    if deepspeed:
        import torch.distributed as dist

        dist.barrier()
    # Every rank makes it (exist_ok): a rank on another node must not rely on rank 0 having made it first.
    directory.mkdir(parents=True, exist_ok=True)
    if deepspeed:
        stepper.save(directory)
    else:
        weights = {
            name: tensor.detach().cpu().contiguous()
            for name, tensor in get_peft_model_state_dict(stepper.student).items()
        }
        save_file(weights, str(directory / _ADAPTER_FILE))
        stepper.save(directory)
    torch.save(_rng_state(), directory / f"rng-{rank}.pt")
    if deepspeed:
        import torch.distributed as dist

        dist.barrier()
    if rank == 0:
        write_atomically(directory / STATE_FILE, json.dumps({**state, "step": step}, indent=1))
        for old in complete_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return directory


def read_state(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{directory / STATE_FILE}: resume: unreadable checkpoint state ({exc})") from None


def load_checkpoint(directory: Path, stepper, *, rank: int, deepspeed: bool) -> dict[str, Any]:
    """Restore weights, optimizer, schedule and RNG; returns the saved trainer state."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = read_state(directory)
    if deepspeed:
        stepper.load(directory)
    else:
        adapter = directory / _ADAPTER_FILE
        if not adapter.is_file():
            raise UserError(f"{adapter}: resume: the checkpoint has no adapter weights")
        result = set_peft_model_state_dict(stepper.student, load_file(str(adapter)))
        if getattr(result, "unexpected_keys", None):
            raise UserError(
                f"{adapter}: resume: weights do not match this model ({result.unexpected_keys[:3]})"
            )
        stepper.load(directory)
    rng = directory / f"rng-{rank}.pt"
    if rng.is_file():
        _restore_rng(torch.load(rng, weights_only=False))
    return state
