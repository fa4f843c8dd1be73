"""distill.trainer.model: the student's precision settings (bf16-mixed keeps fp32 weights and an exact output head)."""

from __future__ import annotations

import numpy as np
import torch
from distill.trainer.loss import AnswerLoss, summed_loss
from distill.trainer.manifest import read_manifest
from distill.trainer.model import autocast_dtype, bf16_units, keep_head_in_fp32, load_student
from distill.trainer.packing import collate_padded
from distill.trainer.tokenize import Sample
from distill.trainer.train import run_training
from safetensors.torch import load_file

from tests.trainer.test_train import _tiny_config


def test_bf16_mixed_runs_the_body_in_bf16_and_the_head_in_fp32(tiny_model):
    model = load_student(tiny_model, "bf16-mixed", torch.device("cpu"), "sdpa")
    assert next(model.parameters()).dtype == torch.float32  # weights stay fp32: only the matmuls are bf16
    ids = torch.randint(0, model.config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = model(input_ids=ids).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            all_bf16 = model(input_ids=ids).logits
        keep_head_in_fp32(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            head_fp32 = model(input_ids=ids).logits
        plain = model(input_ids=ids).logits  # outside autocast the patched head changes nothing
    assert all_bf16.dtype == torch.bfloat16 and head_fp32.dtype == torch.float32
    assert torch.equal(plain, exact)
    assert (head_fp32 - exact).abs().max() < (all_bf16.float() - exact).abs().max()


def test_bf16_mixed_asks_for_bf16_only_where_the_cpu_multiplies_it_in_hardware():
    cpu = torch.device("cpu")
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    assert bf16_units(cpu) == ("avx512_bf16" in flags or "amx_bf16" in flags)
    assert autocast_dtype("bf16-mixed", cpu) == (torch.bfloat16 if bf16_units(cpu) else None)
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) is None


def test_the_chunked_loss_keeps_the_head_exact_under_bf16_autocast(tiny_model):
    model = load_student(tiny_model, "bf16-mixed", torch.device("cpu"), "sdpa")
    ids = np.random.default_rng(0).integers(3, model.config.vocab_size, size=60, dtype=np.int64)
    batch = collate_padded([Sample(ids, 20)], pad_id=0)
    cpu = torch.device("cpu")
    with torch.no_grad():
        exact = float(summed_loss(AnswerLoss(model), batch, cpu))
        mixed = float(summed_loss(AnswerLoss(model, torch.bfloat16), batch, cpu))
        with torch.autocast("cpu", dtype=torch.bfloat16):  # everything in bf16, the head included
            logits = model(**batch.inputs).logits
        all_bf16 = float(
            torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1])[batch.keep].float(), batch.targets, reduction="sum"
            )
        )
    assert abs(mixed - exact) < abs(all_bf16 - exact)


def test_bf16_mixed_training_tracks_fp32(records, tiny_model, tmp_path):
    data = records(tmp_path / "records.jsonl", 16)
    exact = run_training(_tiny_config(tiny_model, data, tmp_path / "fp32"))
    mixed = run_training(_tiny_config(tiny_model, data, tmp_path / "mixed", dtype="bf16-mixed"))
    curve_exact = [loss for _, loss in read_manifest(exact)["loss_curve"]["train"]]
    curve_mixed = [loss for _, loss in read_manifest(mixed)["loss_curve"]["train"]]
    assert len(curve_mixed) == len(curve_exact) >= 3
    assert curve_mixed[-1] < curve_mixed[0]  # it learns
    assert all(abs(a - b) < 0.05 * a for a, b in zip(curve_exact, curve_mixed, strict=True))
    adapter = load_file(str(mixed / "adapter_model.safetensors"))
    assert all(t.dtype == torch.float32 for t in adapter.values())
    assert any(t.abs().sum() > 0 for name, t in adapter.items() if "lora_B" in name)
