"""Records that fit the contract, for tests that build a run directory by hand."""

from __future__ import annotations

import json
from typing import Any


def accepted(row_id: str, sample_index: int = 0, **fields: Any) -> dict[str, Any]:
    """A complete accepted record; ``fields`` override any of its values."""
    thinking, output = fields.pop("thinking", "先看甲乙方"), fields.pop("output", f"answer of {row_id}")
    return {
        "id": row_id,
        "sample_index": sample_index,
        "instruction": f"抽取合同要素\n\n{row_id}",
        "thinking": thinking,
        "output": output,
        "full_output": f"【思考】{thinking}\n\n【答案】{output}",
        "source_model": "m",
        "generated_at": "2026-01-01T00:00:00.000Z",
        "temperature": 0.3,
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        "latency_ms": 1.0,
        "finish_reason": "stop",
    } | fields


def failed(row_id: str, sample_index: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "id": row_id,
        "sample_index": sample_index,
        "error_class": "timeout",
        "message": "slow",
        "status": None,
        "attempts": 1,
        "failed_at": "2026-01-01T00:00:00.000Z",
    } | fields


def lines(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
