"""One side of `distill bench train`, run in its own process: `python -m distill.bench.train_sides SPEC.json`.

Sides, on identical samples (token ids and labels from one .npz):
- ``hf``: the stock stack — HF ``Trainer`` + PEFT LoRA, right-padded batches of ``batch_size`` (labels -100 on
  prompt and pad), SDPA, loss over the full logits.
- ``distill``: this trainer's own step loop (`distill.trainer.loop.run_steps`): the same batches' samples packed
  into ``token_budget`` rows with per-sample attention, output head only on answer positions.
- ``distill-padded``: our loop with packing off, to show what packing alone is worth.
- ``distill-blas``: our loop with fp32 CPU multiplies left to torch's BLAS (``cpu_matmul: blas``), to show what
  routing them through oneDNN is worth.
A side may name its own precision: ``distill@bf16-mixed``, ``hf@bf16``.

Throughput = real (non-pad) tokens of the timed steps / wall time from the end of the last warm-up step to
the end of the last step, taken the same way on both sides.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from distill.bench.train_data import load_samples
from distill.trainer.tokenize import Sample

SHAPES = {
    # Qwen2-0.5B's shape, as the stock HF Trainer + PEFT baseline builds it.
    "qwen2-0.5b": dict(
        kind="qwen2",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        kind="llama",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=49152,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    ),
}


def build_model(spec: dict[str, Any], attention: str):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    dtype = torch.bfloat16 if spec["dtype"] == "bf16" else torch.float32
    if spec["random_weights"]:
        shape = dict(SHAPES[spec["model_shape"]])
        config = (Qwen2Config if shape.pop("kind") == "qwen2" else LlamaConfig)(**shape)
        config._attn_implementation = attention
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        from distill.trainer.student import resolve_student

        model = AutoModelForCausalLM.from_pretrained(
            resolve_student(spec["model"]), dtype=dtype, attn_implementation=attention
        )
    model.config.use_cache = False
    return model.to(spec["device"])


def _memory_now(device: str) -> int:
    """Bytes in use now: allocated CUDA memory, or this process's resident set on the CPU."""
    if device == "cuda":
        return torch.cuda.memory_allocated()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _memory_peak(device: str) -> int:
    """Peak bytes: allocated CUDA memory, or this process's own resident high-water mark (VmHWM; ru_maxrss
    would also count the parent's resident set at the moment it started this process)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))


def _throughput(ends: list[float], tokens: list[int], warmup: int) -> dict[str, Any]:
    """Steps after the first ``warmup`` (at least one: its end is where the clock starts)."""
    warmup = max(1, warmup)
    timed = tokens[warmup : len(ends)]
    seconds = ends[-1] - ends[warmup - 1]
    return {
        "steps_timed": len(timed),
        "real_tokens": int(sum(timed)),
        "seconds": round(seconds, 3),
        "real_tok_per_s": round(sum(timed) / seconds, 1) if seconds > 0 else None,
    }


def run_hf(spec: dict[str, Any], samples: list[Sample]) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from distill.trainer.model import linear_suffixes

    accum = spec["grad_accum"]
    model = build_model(spec, "sdpa")
    model = get_peft_model(
        model, LoraConfig(r=32, lora_alpha=64, target_modules=linear_suffixes(model), task_type="CAUSAL_LM")
    )
    loaded = _memory_now(spec["device"])
    rows = [
        {
            "input_ids": s.input_ids.tolist(),
            "labels": [-100] * s.prompt_len + s.input_ids[s.prompt_len :].tolist(),
        }
        for s in samples
    ]
    real, padded, ends, losses = [], [], [], []

    def collate(features):
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.zeros(len(features), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n], mask[row, :n], labels[row, :n] = (
                torch.tensor(f["input_ids"]),
                1,
                torch.tensor(f["labels"]),
            )
        real.append(int(mask.sum()))
        padded.append(ids.numel())
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=spec["batch_size"],
            gradient_accumulation_steps=accum,
            learning_rate=5e-5,
            weight_decay=0.1,
            num_train_epochs=1,
            max_steps=spec["steps"],
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            bf16=spec["dtype"] != "fp32",
            use_cpu=spec["device"] == "cpu",
            dataloader_num_workers=0,
            remove_unused_columns=False,
            disable_tqdm=True,
            seed=spec["seed"],
        )
        Trainer(
            model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Clock()]
        ).train()
    per_step = [sum(real[i * accum : (i + 1) * accum]) for i in range(len(ends))]
    padded_per_step = [sum(padded[i * accum : (i + 1) * accum]) for i in range(len(ends))]
    result = _throughput(ends, per_step, spec["warmup_steps"])
    timed = slice(max(1, spec["warmup_steps"]), len(ends))
    result["padded_tokens"] = int(sum(padded_per_step[timed]))
    result["pad_fraction"] = round(1 - sum(per_step[timed]) / max(1, sum(padded_per_step[timed])), 3)
    result["last_loss"] = losses[-1] if losses else None
    result["loaded_bytes"] = loaded
    result["forward_tokens"] = max(real)  # real tokens in the largest forward (a padded batch)
    return result


def run_distill(
    spec: dict[str, Any], samples: list[Sample], packing: bool, cpu_matmul: str
) -> dict[str, Any]:
    from distill.trainer import attention
    from distill.trainer.config import TrainConfig
    from distill.trainer.distributed import Dist
    from distill.trainer.loop import Batches, History, make_stepper, plan_for, run_steps
    from distill.trainer.loss import answer_loss
    from distill.trainer.model import add_lora
    from distill.trainer.progress import TrainProgress

    with tempfile.TemporaryDirectory() as scratch:
        config = TrainConfig(
            data=[spec["samples"]],
            output_dir=scratch,
            per_device_batch_size=spec["batch_size"],
            gradient_accumulation_steps=spec["grad_accum"],
            epochs=1,
            max_steps=spec["steps"],
            packing=packing,
            token_budget=spec["token_budget"],
            max_length=min(spec["token_budget"], 1 << 16),
            dtype=spec["dtype"],
            device=spec["device"],
            cpu_matmul=cpu_matmul,
            eval_steps=10**9,
            save_steps=10**9,
            val_size=0,
            seed=spec["seed"],
        )
        device = torch.device(spec["device"])
        student = add_lora(build_model(spec, attention.register() if packing else "sdpa"), config)
        plan = plan_for(config, samples, 1)
        loaded = _memory_now(spec["device"])
        objective = answer_loss(student, config, device)
        stepper = make_stepper(objective, config, plan, Dist())
        history = History()
        last = min(spec["steps"], len(plan.steps))
        run_steps(
            config,
            stepper=stepper,
            plan=plan,
            batches=Batches(samples, packing, pad_id=0),
            eval_sets={},
            device=device,
            dist=Dist(),
            history=history,
            start=0,
            last_step=last,
            progress=TrainProgress(last, 0, None, enabled=False),
        )
    result = _throughput(
        [s["wall"] for s in history.steps], [s["tokens"] for s in history.steps], spec["warmup_steps"]
    )
    result["micro_batches_per_step"] = plan.micro_batches
    result["cpu_matmul"] = "onednn" if objective.onednn else "blas"
    result["last_loss"] = history.steps[-1]["loss"]
    result["loaded_bytes"] = loaded
    result["forward_tokens"] = max(  # real tokens in the largest forward (a packed row)
        sum(samples[i].length for i in indices) for step in plan.steps[:last] for indices in step[0]
    )
    return result


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    side, _, dtype = spec["side"].partition("@")  # e.g. distill@bf16-mixed: this side in another precision
    spec["dtype"] = dtype or spec["dtype"]
    torch.manual_seed(spec["seed"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    samples = load_samples(Path(spec["samples"]))[: spec["batch_size"] * spec["grad_accum"] * spec["steps"]]
    started = time.perf_counter()
    if side == "hf":
        result = run_hf(spec, samples)
    else:
        result = run_distill(
            spec,
            samples,
            packing=side != "distill-padded",
            cpu_matmul="blas" if side == "distill-blas" else "auto",
        )
    peak = _memory_peak(spec["device"])
    # Memory per token: what training added to the loaded model, over the tokens of the largest forward.
    result["kib_per_token"] = round((peak - result.pop("loaded_bytes")) / 1024 / result["forward_tokens"], 1)
    result.update(
        side=spec["side"],
        dtype=spec["dtype"],
        round=spec["round"],
        total_seconds=round(time.perf_counter() - started, 1),
        peak_rss_mib=round(_memory_peak("cpu") / 2**20),
        threads=torch.get_num_threads(),
        device=torch.cuda.get_device_name(0) if spec["device"] == "cuda" else "cpu",
    )
    if spec["device"] == "cuda":
        result["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
