"""Packing: per-sample loss identical packed and unpacked; every rank gets the same micro-batch count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from distill.trainer import attention
from distill.trainer.loss import AnswerLoss, summed_loss
from distill.trainer.packing import build_plan, collate_packed, collate_padded
from distill.trainer.tokenize import Sample


def _samples(lengths, vocab=49152, seed=0):
    rng = np.random.default_rng(seed)
    return [Sample(rng.integers(3, vocab, size=n, dtype=np.int64), max(1, n // 3)) for n in lengths]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from transformers import AutoModelForCausalLM

    def load(attn):
        model = AutoModelForCausalLM.from_pretrained(
            tiny_model, dtype=torch.float64, attn_implementation=attn
        )
        model.config.use_cache = False
        return model.eval()

    return load


def test_per_sample_loss_is_the_same_packed_and_unpacked(tiny):
    samples = _samples([37, 5, 120, 64, 2])
    alone = AnswerLoss(tiny("sdpa"))
    packed_model = tiny(attention.register())
    cpu = torch.device("cpu")
    with torch.no_grad():
        expected = [float(summed_loss(alone, collate_padded([s], pad_id=0), cpu)) for s in samples]
        batch = collate_packed(samples)
        logits = packed_model(**batch.inputs, logits_to_keep=batch.keep).logits[0]
        per_token = torch.nn.functional.cross_entropy(logits, batch.targets, reduction="none")
        got = [float(part.sum()) for part in per_token.split([s.label_count for s in samples])]
        padded = float(summed_loss(alone, collate_padded(samples, pad_id=0), cpu))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert padded == pytest.approx(sum(expected), rel=1e-9)
    assert batch.inputs["position_ids"][0, 37].item() == 0 and batch.inputs["position_ids"][0, 42].item() == 0


def test_packed_gradients_match_unpacked(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    samples = _samples([30, 11, 47], seed=3)
    grads = []
    for packed in (False, True):
        model = AutoModelForCausalLM.from_pretrained(
            tiny_model, dtype=torch.float64, attn_implementation=attention.register() if packed else "sdpa"
        )
        model.config.use_cache = False
        torch.manual_seed(0)
        model = get_peft_model(
            model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        )
        batches = [collate_packed(samples)] if packed else [collate_padded([s], 0) for s in samples]
        for batch in batches:
            summed_loss(AnswerLoss(model), batch, torch.device("cpu")).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-8, atol=1e-10)


def test_plan_gives_every_rank_the_same_micro_batch_count_within_budget():
    samples = _samples([int(n) for n in np.random.default_rng(1).integers(20, 300, size=101)])
    plan = build_plan(
        samples, epochs=2, per_device_batch=2, grad_accum=8, world=3, packing=True, token_budget=600, seed=7
    )
    lengths = [s.length for s in samples]
    assert plan.dropped_tail == 101 % 3
    assert len(plan.steps) == 2 * plan.steps_per_epoch
    for step in plan.steps:
        assert {len(bins) for bins in step} == {plan.micro_batches}
        for bins in step:
            assert all(sum(lengths[i] for i in b) <= 600 for b in bins)
    first_epoch = [i for step in plan.steps[: plan.steps_per_epoch] for bins in step for b in bins for i in b]
    assert len(first_epoch) == len(set(first_epoch)) == 99
    assert plan.label_tokens[0] == sum(
        samples[i].label_count for bins in plan.steps[0] for b in bins for i in b
    )
    again = build_plan(
        samples, epochs=2, per_device_batch=2, grad_accum=8, world=3, packing=True, token_budget=600, seed=7
    )
    assert again.steps == plan.steps


def test_unpacked_plan_splits_short_steps_and_fills_gaps_with_empty_micro_batches():
    samples = _samples([10] * 10)
    plan = build_plan(
        samples, epochs=1, per_device_batch=2, grad_accum=2, world=2, packing=False, token_budget=100, seed=0
    )
    assert plan.micro_batches == 2 and len(plan.steps) == 2
    assert [len(b) for b in plan.steps[0][0]] == [2, 2]
    assert sorted(len(b) for bins in plan.steps[1] for b in bins) == [0, 0, 1, 1]  # one sample per rank left
    empty = collate_packed([])
    assert empty.label_tokens == 0 and empty.inputs["input_ids"].shape == (1, 1)
