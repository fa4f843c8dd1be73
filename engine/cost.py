"""Tokens and money, counted live from each response's `usage`, and the budget that stops admission.

Spend includes earlier runs of the same directory (their token totals come from the ledger) at today's
prices, so a budget is a budget for the whole dataset, not for each resume. Each request reserves its most
expensive outcome (estimated prompt + ``max_tokens`` at the price) when it is admitted and hands it back when
it is reported, so the requests in flight can never spend past the budget together.
"""

from __future__ import annotations

from typing import Any

from distill.engine.types import Job

from distill.endpoint import Price


class CostMeter:
    def __init__(
        self,
        price: Price | None,
        budget: float | None = None,
        *,
        prior_prompt_tokens: int = 0,
        prior_completion_tokens: int = 0,
    ) -> None:
        self.price = price
        self.budget = budget
        self.prior_prompt_tokens = prior_prompt_tokens
        self.prior_completion_tokens = prior_completion_tokens
        self.prompt_tokens = 0  # this session only
        self.completion_tokens = 0
        self.reserved = 0.0  # money held by requests in flight

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    def money(self, prompt_tokens: int, completion_tokens: int) -> float:
        if self.price is None:
            return 0.0
        return (
            prompt_tokens * self.price.input_per_million + completion_tokens * self.price.output_per_million
        ) / 1_000_000

    def job_cost(self, job: Job) -> float:
        """The most ``job`` can cost: its estimated prompt and all of ``max_tokens``."""
        max_tokens = job.request.max_tokens
        return self.money(max(0, job.reserved_tokens - max_tokens), max_tokens)

    def reserve(self, job: Job) -> bool:
        """Hold ``job``'s most expensive outcome; False (nothing held) when the budget cannot cover it."""
        if self.budget is None:
            return True
        cost = self.job_cost(job)
        if self.total_spend + self.reserved + cost > self.budget:
            return False
        self.reserved += cost
        return True

    def release(self, job: Job) -> None:
        """Hand back what :meth:`reserve` held for ``job`` (its real cost is counted from usage)."""
        if self.budget is not None:
            self.reserved = max(0.0, self.reserved - self.job_cost(job))

    @property
    def session_spend(self) -> float:
        return self.money(self.prompt_tokens, self.completion_tokens)

    @property
    def total_spend(self) -> float:
        return self.money(
            self.prior_prompt_tokens + self.prompt_tokens,
            self.prior_completion_tokens + self.completion_tokens,
        )

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.total_spend >= self.budget

    @property
    def currency(self) -> str:
        return self.price.currency if self.price else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency or None,
            "priced": self.price is not None,
            "budget": self.budget,
            "session": round(self.session_spend, 6),
            "total": round(self.total_spend, 6),
            "tokens": {
                "session": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
                "total": {
                    "prompt": self.prior_prompt_tokens + self.prompt_tokens,
                    "completion": self.prior_completion_tokens + self.completion_tokens,
                },
            },
        }
