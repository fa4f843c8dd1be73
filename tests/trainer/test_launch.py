"""DeepSpeed ZeRO-2 and ZeRO-3 with two gloo processes (launched by torchrun) on a tiny random Llama.

The saved adapters must reload complete; ZeRO-2 must also train exactly what one process trains, which
checks the loss scaling across ranks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from distill.trainer.config import TrainConfig
from distill.trainer.launch import launch_command
from distill.trainer.manifest import read_manifest
from distill.trainer.train import run_training

from distill.errors import UserError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _config(tiny_model, data, output_dir, **overrides) -> TrainConfig:
    settings = dict(
        data=[str(data)],
        base_model=str(tiny_model),
        output_dir=str(output_dir),
        epochs=1,
        per_device_batch_size=2,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        val_size=0.0,
        max_length=256,
        token_budget=512,
        eval_steps=3,
        save_steps=1000,
    )
    return TrainConfig(**{**settings, **overrides})


def _weights(adapter: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


def _reloads_complete(adapter: Path, tiny_model: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(adapter))
    lora = {name: p for name, p in model.named_parameters() if "lora_" in name}
    assert len(lora) == 2 * 7 * 2  # A and B for 7 linear layers in each of 2 layers
    assert all(p.numel() > 0 for p in lora.values())
    assert any(p.abs().sum() > 0 for name, p in lora.items() if "lora_B" in name)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_with_two_gloo_processes_saves_a_complete_adapter(stage, records, tiny_model, tmp_path):
    data = records(tmp_path / "records.jsonl", 16)
    config = _config(
        tiny_model, data, tmp_path / f"zero{stage}", deepspeed=str(CONFIGS / f"ds_zero{stage}.json"), nproc=2
    )
    adapter = run_training(config)
    _reloads_complete(adapter, tiny_model)
    manifest = read_manifest(adapter)
    assert manifest["processes"] == 2 and manifest["steps"] == 4
    # Same samples per step on one process (batch 2 × accumulation 2): the same adapter.
    single = run_training(_config(tiny_model, data, tmp_path / "single", gradient_accumulation_steps=2))
    zero, one = _weights(adapter), _weights(single)
    assert zero.keys() == one.keys()
    assert all(torch.allclose(zero[k], one[k], atol=2e-5) for k in zero)
    assert [round(loss, 4) for _, loss in manifest["loss_curve"]["train"]] == [
        round(loss, 4) for _, loss in read_manifest(single)["loss_curve"]["train"]
    ]


def test_launch_command_passes_the_multi_node_flags(tiny_model, tmp_path):
    config = _config(
        tiny_model,
        tmp_path / "d.jsonl",
        tmp_path / "o",
        deepspeed="ds.json",
        nproc=4,
        nnodes=2,
        node_rank=1,
        master_addr="10.0.0.1",
        master_port=29999,
    )
    command = launch_command(config, tmp_path / "train_config.json")
    joined = " ".join(command)
    assert "-m torch.distributed.run --nproc_per_node 4 --nnodes 2 --node_rank 1" in joined
    assert "--master_addr 10.0.0.1 --master_port 29999 -m distill.trainer.launch" in joined


def test_bad_deepspeed_settings_are_user_errors(records, tiny_model, tmp_path):
    data = records(tmp_path / "records.jsonl", 4)
    with pytest.raises(UserError, match="deepspeed: config file not found"):
        run_training(
            _config(tiny_model, data, tmp_path / "a", deepspeed=str(tmp_path / "nope.json"), nproc=2)
        )
    with pytest.raises(ValueError, match="several processes need a DeepSpeed config"):
        _config(tiny_model, data, tmp_path / "b", nproc=2)
