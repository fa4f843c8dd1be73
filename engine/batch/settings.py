"""``generate.batch``: how batch mode splits, submits, tracks and collects (docs/batch.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# What a batch costs next to the same request sent online, unless the config gives the batch price.
DEFAULT_PRICE_FACTOR = 0.5


class BatchSettings(BaseModel):
    """Settings of provider batch mode (``generate.mode: batch``)."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["openai"] = Field(
        default="openai", description="batch API: openai (OpenAI and the providers that copy its /v1/batches)"
    )
    max_requests_per_file: int = Field(
        default=50_000, ge=1, description="requests in one batch input file (OpenAI allows 50,000)"
    )
    max_bytes_per_file: int = Field(
        default=200_000_000, ge=4096, description="bytes in one batch input file (OpenAI allows 200 MB)"
    )
    completion_window: Literal["24h"] = Field(default="24h", description="the provider's completion window")
    wait: bool = Field(
        default=True,
        description="track the batches until every one is collected; --no-wait: submit, then return (rerun "
        "the same command to collect)",
        json_schema_extra={"flag": "--wait"},
    )
    fallback: Literal["batch", "online"] = Field(
        default="batch",
        description="how requests left without an answer by an expired or failed batch are sent again: batch "
        "(in a new batch) or online (over /chat/completions at the online price, once every batch is settled)",
        json_schema_extra={"flag": "--fallback"},
    )
    max_resends: int = Field(
        default=3,
        ge=0,
        description="times unanswered requests are sent again before they get failure records",
    )
    poll_initial_s: float = Field(default=5.0, gt=0, description="first wait between two looks at a batch")
    poll_max_s: float = Field(default=60.0, gt=0, description="longest wait between two looks at a batch")
    max_concurrent_calls: int = Field(
        default=8, ge=1, le=256, description="file and batch API calls in flight at once"
    )
    download_attempts: int = Field(default=5, ge=1, le=100, description="tries to download one result file")
    call_attempts: int = Field(default=6, ge=1, le=100, description="tries of one files/batches API call")
    reconcile_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="after a crash, how long a batch creation that was in flight may take to show up in the "
        "provider's list before it is known not to have happened",
    )
    price_factor: float = Field(
        default=DEFAULT_PRICE_FACTOR, gt=0, le=1, description="batch price as a share of the online price"
    )
    keep_files: bool = Field(
        default=False, description="keep the batch input and result files after their records are written"
    )

    @model_validator(mode="after")
    def _poll_order(self) -> BatchSettings:
        if self.poll_max_s < self.poll_initial_s:
            raise ValueError("poll_max_s must be at least poll_initial_s")
        return self
