"""Input rows → teacher jobs, lazily, skipping what earlier runs finished.

One job per (id, sample_index) still to do. Jobs are produced only as the dispatcher pulls them, so a
million-row input never sits in memory. Rows are read from the `ResumePosition`'s start, and every row read
and issued is reported to it, so it knows how far every row is finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from distill.engine.config import GenerateConfig
from distill.engine.inputs import iter_inputs
from distill.engine.prompts import build_instruction, build_messages, estimate_prompt_tokens, render_prompt
from distill.engine.records import record_key
from distill.engine.resume import ResumePosition
from distill.engine.types import ChatRequest, Job


def request_extras(config: GenerateConfig) -> dict[str, Any]:
    """Body fields every request of a run carries beyond the chat basics: the answer schema as
    ``response_format`` when ``structured_output`` is on."""
    if not config.structured_output or config.answer_schema is None:
        return {}
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": config.answer_schema, "strict": True},
        }
    }


def make_jobs(
    config: GenerateConfig,
    template: str,
    *,
    done: set[int],
    position: ResumePosition,
    derive_ids: bool | None = None,
) -> Iterator[Job]:
    """Jobs for every (row, sample) from the position's start on whose key is not in ``done``."""
    task = config.task
    samples = range(config.samples_per_input)
    temperatures = [config.temperature_first] + [config.temperature_rest] * (config.samples_per_input - 1)
    max_tokens, model, send_seed = config.max_tokens, config.teacher.model, config.send_seed
    extra = request_extras(config)
    rows = iter_inputs(
        config.input, config.id_field, config.input_field, start=position.start, derive_ids=derive_ids
    )
    for row in rows:
        position.reading(row.offset, row.line)
        if done:
            todo = [sample for sample in samples if record_key(row.id, sample) not in done]
            if not todo:
                continue
        else:
            todo = samples
        position.issue(row.id, row.offset, row.line, len(todo))
        prompt = render_prompt(template, task, row.text)
        messages = build_messages(prompt)
        reserved = estimate_prompt_tokens(prompt) + max_tokens
        meta = {"instruction": build_instruction(task, row.text)}
        for sample in todo:
            request = ChatRequest(
                messages=messages,
                model=model,
                temperature=temperatures[sample],
                max_tokens=max_tokens,
                request_id=f"{row.id}#{sample}",
                extra_body={**extra, "seed": sample} if send_seed else extra or None,
            )
            yield Job((row.id, sample), request, reserved, meta)
