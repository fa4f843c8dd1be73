"""Input rows → teacher jobs, lazily, skipping what earlier runs finished; and the resume watermark.

One job per (id, sample_index) still to do. Jobs are produced only as the dispatcher pulls them, so a
million-row input never sits in memory. The watermark is the byte offset before which every row is finished:
the runner stores it in the ledger now and then, and a resumed run seeks there instead of re-reading and
re-hashing a million finished rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from distill.engine.config import GenerateConfig
from distill.engine.inputs import iter_inputs
from distill.engine.prompts import build_instruction, build_messages, estimate_prompt_tokens, render_prompt
from distill.engine.resume import record_key
from distill.engine.types import ChatRequest, Job


class RowWatermark:
    """Tracks rows with samples still outstanding, in input order, to know how far every row is done."""

    def __init__(self, start: tuple[int, int]) -> None:
        self._pending: dict[str, list[int]] = {}  # row id -> [offset, line, samples outstanding]
        self._order: deque[str] = deque()
        self._read_to = start

    def reading(self, offset: int, line: int) -> None:
        """The producer is at this row: every row before it has been issued (or needed nothing)."""
        self._read_to = (offset, line)

    def issue(self, row_id: str, offset: int, line: int, samples: int) -> None:
        self._pending[row_id] = [offset, line, samples]
        self._order.append(row_id)

    def finished(self, row_id: str) -> None:
        entry = self._pending.get(row_id)
        if entry is not None:
            entry[2] -= 1
            if entry[2] <= 0:
                del self._pending[row_id]

    def position(self) -> tuple[int, int]:
        """(offset, line) of the first row that may still have work; every row before it is finished."""
        order, pending = self._order, self._pending
        while order and order[0] not in pending:
            order.popleft()
        if order:
            offset, line, _ = pending[order[0]]
            return offset, line
        return self._read_to


def make_jobs(
    config: GenerateConfig,
    template: str,
    *,
    done: set[int],
    watermark: RowWatermark,
    start: tuple[int, int] = (0, 1),
    derive_ids: bool | None = None,
) -> Iterator[Job]:
    """Jobs for every (row, sample) from ``start`` on whose key is not in ``done``."""
    task = config.task
    samples = range(config.samples_per_input)
    temperatures = [config.temperature_first] + [config.temperature_rest] * (config.samples_per_input - 1)
    max_tokens, model, send_seed = config.max_tokens, config.teacher.model, config.send_seed
    rows = iter_inputs(config.input, config.id_field, config.input_field, start=start, derive_ids=derive_ids)
    for row in rows:
        watermark.reading(row.offset, row.line)
        if done:
            todo = [sample for sample in samples if record_key(row.id, sample) not in done]
            if not todo:
                continue
        else:
            todo = samples
        watermark.issue(row.id, row.offset, row.line, len(todo))
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
                extra_body={"seed": sample} if send_seed else None,
            )
            yield Job((row.id, sample), request, reserved, meta)
