"""TrainConfig: the seed's values by default (declared only there), file:line errors, flags over the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from distill.trainer.config import TrainConfig

from distill.config_files import load_config
from distill.errors import UserError


def test_defaults_are_the_seed_configuration():
    config = TrainConfig(data=["runs/x"])
    seed = dict(
        lora_rank=32,
        lora_alpha=64,
        lora_target="all",
        learning_rate=5e-5,
        epochs=2,
        per_device_batch_size=2,
        gradient_accumulation_steps=8,
        weight_decay=0.1,
        val_size=0.05,
        eval_steps=100,
    )
    assert {key: getattr(config, key) for key in seed} == seed


def test_errors_name_the_file_line_and_key(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("data: runs/x\nlora_rank: 0\nlearning_rate: 5e-5\nbogus: 1\n")
    with pytest.raises(UserError) as caught:
        load_config(TrainConfig, path)
    message = str(caught.value)
    assert f"{path}:2: lora_rank:" in message and f"{path}:4: bogus: unknown key" in message


def test_flags_override_the_file_and_lists_are_accepted(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("data: runs/x\nlora_target: q_proj, v_proj\nepochs: 1\n")
    config = load_config(TrainConfig, path, {"epochs": 3.0, "data": None})
    assert config.epochs == 3 and config.data == ["runs/x"] and config.lora_target == ["q_proj", "v_proj"]
    with pytest.raises(UserError, match="token_budget .* must be at least max_length"):
        load_config(TrainConfig, path, {"token_budget": 100, "max_length": 200})


def test_a_bundled_deepspeed_config_is_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(data=["x"], deepspeed="configs/ds_zero2.json", nproc=2)
    assert Path(config.deepspeed).is_file() and Path(config.deepspeed).name == "ds_zero2.json"
    (tmp_path / "mine.json").write_text("{}")
    assert TrainConfig(data=["x"], deepspeed="mine.json").deepspeed == "mine.json"
