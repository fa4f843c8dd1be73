"""The filter verdicts shown beside a record: each of the engine's checks, its measured value and its limit."""

from __future__ import annotations

from typing import Any

from distill.engine import filters
from distill.engine.config import FilterConfig
from distill.engine.filters import QualityFilter, bigram_cosine


def filter_verdicts(status: str, record: dict[str, Any], config: FilterConfig) -> list[dict[str, Any]]:
    """[{check, passed, detail}] in the order the engine applies them; empty for a failed call."""
    if status == "failed":
        return []
    reason = record.get("reject_reason")
    verdicts: list[dict[str, Any]] = []

    def add(check: str, passed: bool, detail: str) -> None:
        verdicts.append({"check": check, "passed": passed, "detail": detail})

    finish = record.get("finish_reason")
    add(filters.TRUNCATED, finish != "length" or not config.reject_truncated, f"finish_reason: {finish}")
    output = record.get("output")
    if output is None:
        add(filters.FORMAT, False, "no 【思考过程】/【最终答案】 markers: the reply could not be split")
        if reason == filters.REFUSAL:
            add(filters.REFUSAL, False, "the reply is a refusal")
        return verdicts
    add(filters.FORMAT, True, "thinking and answer found")
    refused = QualityFilter(config).is_refusal(output)
    add(filters.REFUSAL, not refused, "a refusal phrase appears" if refused else "no refusal phrase")
    add(
        filters.TOO_SHORT,
        len(output) >= config.min_output_chars,
        f"{len(output)} characters (at least {config.min_output_chars})",
    )
    similarity = bigram_cosine(str(record.get("instruction") or ""), output)
    add(
        filters.ECHO,
        similarity <= config.max_instruction_similarity,
        f"similarity to the instruction {similarity:.2f} (at most {config.max_instruction_similarity})",
    )
    duplicate = reason == filters.DUPLICATE
    add(
        filters.DUPLICATE,
        not duplicate,
        "the same answer was accepted for another record" if duplicate else "no earlier identical answer",
    )
    return verdicts
