"""The GPU path: FlashAttention over packed rows (varlen), bf16, the chunked head loss, ZeRO-2/3 over NCCL.

Runs wherever torch sees a CUDA device (`scripts/gpu-check.sh` runs it there) and is skipped, visibly, on a
machine without one. Self-contained: a tiny random Llama and a byte-level tokenizer trained here, so it
needs no downloaded weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from distill.trainer import attention
from distill.trainer.config import TrainConfig
from distill.trainer.loss import AnswerLoss, summed_loss
from distill.trainer.manifest import read_manifest
from distill.trainer.packing import collate_packed, collate_padded
from distill.trainer.tokenize import Sample
from distill.trainer.train import run_training

from tests.trainer.conftest import write_records

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device: scripts/gpu-check.sh runs these on a machine with one",
)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def standalone_model(tmp_path_factory) -> Path:
    """A 2-layer Llama with random weights and a byte-level BPE tokenizer with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("standalone-llama")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(
        ["抽取合同要素 甲方 乙方 金额 公司 条款 user assistant system"],
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = _TEMPLATE
    tokenizer.save_pretrained(directory)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def _samples(vocab: int, lengths=(37, 5, 120, 64, 2)) -> list[Sample]:
    rng = np.random.default_rng(0)
    return [Sample(rng.integers(3, vocab, size=n, dtype=np.int64), max(1, n // 3)) for n in lengths]


def test_varlen_attention_and_chunked_loss_match_each_sample_alone_in_bf16(standalone_model):
    from transformers import AutoModelForCausalLM

    device = torch.device("cuda")
    models = {
        name: AutoModelForCausalLM.from_pretrained(
            standalone_model, dtype=torch.bfloat16, attn_implementation=attn
        )
        .to(device)
        .eval()
        for name, attn in (("alone", "sdpa"), ("packed", attention.register()))
    }
    for model in models.values():
        model.config.use_cache = False
    samples = _samples(models["alone"].config.vocab_size)
    with torch.no_grad():
        alone = [
            float(summed_loss(AnswerLoss(models["alone"]), collate_padded([s], 0), device)) for s in samples
        ]
        packed = collate_packed(samples)
        logits = models["packed"](
            **{k: v.to(device) if torch.is_tensor(v) else v for k, v in packed.inputs.items()}
        )
        full = F.cross_entropy(
            logits.logits[0][packed.keep.to(device)].float(), packed.targets.to(device), reduction="sum"
        )
        chunked = float(summed_loss(AnswerLoss(models["packed"]), packed, device))
    assert chunked == pytest.approx(sum(alone), rel=2e-2)  # bf16 attention in another kernel
    assert chunked == pytest.approx(float(full), rel=1e-3)  # the same kernel: only the head's slicing differs


def _config(model: Path, data: Path, output: Path, **overrides) -> TrainConfig:
    settings = dict(
        data=[str(data)],
        base_model=str(model),
        output_dir=str(output),
        epochs=2,
        per_device_batch_size=2,
        gradient_accumulation_steps=2,
        learning_rate=2e-3,
        val_size=0.0,
        max_length=256,
        token_budget=512,
        eval_steps=1000,
        save_steps=3,
        device="cuda",
        dtype="bf16-mixed",
    )
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_training_on_cuda_with_zero_over_nccl(stage, standalone_model, tmp_path):
    """bf16-mixed training on the GPU: one process without DeepSpeed, then ZeRO-2 and ZeRO-3 on as many
    GPUs as there are (NCCL; its per-step loss reduction runs on CUDA tensors)."""
    data = write_records(tmp_path / "records.jsonl", 16)
    gpus = min(2, torch.cuda.device_count())
    extra = {"deepspeed": str(CONFIGS / f"ds_zero{stage}.json"), "nproc": gpus} if stage else {}
    if stage and gpus > 1:
        extra["gradient_accumulation_steps"] = 1  # the same samples per step over two GPUs
    adapter = run_training(_config(standalone_model, data, tmp_path / f"zero{stage}", **extra))
    manifest = read_manifest(adapter)
    curve = [loss for _, loss in manifest["loss_curve"]["train"]]
    assert manifest["processes"] == (gpus if stage else 1) and manifest["steps"] == 8
    assert curve[-1] < curve[0] and all(np.isfinite(curve))
    assert manifest["tokens_per_second"] > 0
    assert (tmp_path / f"zero{stage}" / "checkpoints" / "step-000006" / "trainer_state.json").is_file()
