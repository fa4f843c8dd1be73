"""An edited answer goes through the engine's own parser and filters before it may be saved.

The edit is put back into the teacher's format (【思考过程】…【最终答案】…) and parsed with `parse_cot`, so a
marker typed into the text is caught exactly as it would be in a teacher's reply; the answer then meets the
same quality filters (refusal, too short, echo of the instruction, duplicate of another accepted answer). When
the original answer was JSON, the edit must be JSON too: the student learns one format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from distill.engine import filters as engine_filters
from distill.engine.config import FilterConfig
from distill.engine.filters import QualityFilter, output_hash
from distill.engine.parsing import parse_cot

_TEACHER_FORMAT = "【思考过程】{thinking}\n【最终答案】{answer}"


@dataclass(frozen=True, slots=True)
class EditCheck:
    thinking: str
    output: str
    problem: str | None  # None: the edit may be saved
    filter_reason: str | None = None


def is_json_value(text: str) -> bool:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True


def check_edit(
    *,
    instruction: str,
    thinking: str,
    output: str,
    original_output: str,
    filters: FilterConfig,
    is_duplicate: Callable[[int], bool],
) -> EditCheck:
    """Parse and filter an edited (thinking, answer); ``is_duplicate(hash)`` asks about other records."""
    parsed = parse_cot(_TEACHER_FORMAT.format(thinking=thinking, answer=output))
    if parsed is None or not parsed[1]:
        return EditCheck(thinking, output, "the answer is empty")
    if parsed != (thinking.strip(), output.strip()):
        return EditCheck(
            thinking,
            output,
            "the text contains an answer marker (【最终答案】 or [Final Answer]): "
            "the parser would split it elsewhere; remove the marker",
        )
    thinking, output = parsed
    if is_json_value(original_output) and not is_json_value(output):
        try:
            json.loads(output)
            detail = "not a JSON object or array"
        except ValueError as exc:
            detail = str(exc)
        return EditCheck(thinking, output, f"the original answer is JSON and this edit is not ({detail})")
    quality = QualityFilter(filters.model_copy(update={"dedupe": False}))
    reason, _ = quality.judge(instruction, output)
    if reason is None and filters.dedupe and is_duplicate(signed_hash(output_hash(output))):
        reason = engine_filters.DUPLICATE
    if reason is not None:
        return EditCheck(thinking, output, f"the filters reject this answer: {reason}", reason)
    return EditCheck(thinking, output, None)


def signed_hash(value: int) -> int:
    """A 64-bit unsigned hash as SQLite's signed INTEGER."""
    return value - (1 << 64) if value >= 1 << 63 else value
