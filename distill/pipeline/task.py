"""The run's task as the other stages see it: its instruction and the name its training files carry."""

from __future__ import annotations

from typing import Any

from distill.pipeline.config import RunConfig
from distill.pipeline.contract_parts import FIELDS
from distill.pipeline.contract_task import TASK_DESCRIPTION


def instruction(config: RunConfig) -> str:
    """The task description that goes into the teacher's template and before every student input."""
    return TASK_DESCRIPTION


def dataset_name(config: RunConfig) -> str:
    return "contracts"


def metrics_settings(config: RunConfig) -> dict[str, Any]:
    """The evaluator's ``metrics:`` for the task."""
    # The task fixes the formats (integer yuan, ISO date), but a correct value written as 500,000 or
    # 2024年3月5日 is still the right value: F1 compares values, format compliance checks the JSON.
    return {
        "fields": list(FIELDS),
        "field_normalisers": {"金额": ["nfkc", "number"], "签订日期": ["nfkc", "date"]},
    }
