"""Batched greedy student generation with transformers: the fallback when vLLM is absent, and the reference
the vLLM path is checked against.

A LoRA adapter is merged into the base weights after loading (PEFT ``merge_and_unload``), so generation runs
at the speed of the plain model. Prompts arrive as token ids, sorted by length into batches to keep left
padding short, and come back in their original order, cut after the first end-of-sequence token as vLLM does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any


def load_model(model_dir: str | os.PathLike, adapter_dir: str | os.PathLike | None, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return model.eval()


def _stop_ids(model) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


def generate(
    model,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int | Sequence[int],
    *,
    batch_size: int = 16,
    pad_token_id: int = 0,
    force_length: bool = False,
) -> list[dict[str, Any]]:
    """Greedy continuations of ``prompts`` (token ids); ``force_length`` ignores EOS (for benchmarks)."""
    import torch

    limits = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    stops = _stop_ids(model)
    order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
    results: list[dict[str, Any] | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(prompts[index]) for index in batch)
        ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, index in enumerate(batch):
            prompt = prompts[index]
            ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        new_tokens = max(limits[index] for index in batch)
        extra = {"min_new_tokens": new_tokens} if force_length else {}
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=pad_token_id,
                **extra,
            )
        for row, index in enumerate(batch):
            tokens = out[row, width:].tolist()[: limits[index]]
            finish = "length"
            if not force_length:
                for position, token in enumerate(tokens):
                    if token in stops:
                        tokens, finish = tokens[: position + 1], "stop"
                        break
            results[index] = {
                "token_ids": tokens,
                "finish_reason": finish,
                "prompt_tokens": len(prompts[index]),
                "completion_tokens": len(tokens),
            }
    return results  # type: ignore[return-value]


def run_generation(
    model_dir: str | os.PathLike,
    adapter_dir: str | os.PathLike | None,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int | Sequence[int],
    *,
    dtype: str = "float32",
    batch_size: int = 16,
    threads: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Load, generate and decode: outputs in prompt order (with ``text``) and the load/generate timings."""
    import torch
    from transformers import AutoTokenizer

    if threads is not None:
        torch.set_num_threads(threads)

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_model(model_dir, adapter_dir, dtype)
    loaded = time.perf_counter()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    outputs = generate(model, prompts, max_new_tokens, batch_size=batch_size, pad_token_id=pad)
    for output in outputs:
        output["text"] = tokenizer.decode(output["token_ids"], skip_special_tokens=True)
    return outputs, {"load_s": loaded - started, "generate_s": time.perf_counter() - loaded}
