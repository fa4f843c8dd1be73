"""`distill review`'s settings: who reviews, the guideline shown beside each record, the filters an edited
answer must pass, and the optional judge that scores records before people read them."""

from __future__ import annotations

from pathlib import Path

from distill.engine.config import FilterConfig
from distill.evaluator.config import CalledEndpoint
from pydantic import BaseModel, ConfigDict, Field

from distill.errors import UserError


class ReviewJudgeConfig(CalledEndpoint):
    """An OpenAI-compatible judge that scores each accepted record 0–10 against the task before review."""

    max_tokens: int = Field(default=32, ge=1)
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=10,
        description="below this score a record is rejected as low_score (a person may still approve it); "
        "null: the score only sorts",
    )


class ReviewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reviewer: str | None = Field(default=None, description="the name written with each decision")
    guideline: str = Field(default="", description="what to approve and what to reject, shown beside records")
    guideline_file: Path | None = Field(default=None, description="a UTF-8 text file with the guideline")
    # The filters an edited answer must pass: set them as in the generation config.
    filters: FilterConfig = Field(default_factory=FilterConfig)
    judge: ReviewJudgeConfig | None = None

    def guideline_text(self) -> str:
        if self.guideline_file is None:
            return self.guideline
        try:
            return self.guideline_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(
                f"{self.guideline_file}: guideline_file: cannot read it as UTF-8 text: {exc}"
            ) from None
