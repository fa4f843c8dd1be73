"""How long to wait before trying a transient failure again, and how many times.

Full jitter ("AWS Architecture Blog: Exponential Backoff And Jitter"): the wait is uniform in
[0, min(cap, base * 2**attempt)], which spreads a crowd of failed requests out instead of letting them
return in lock-step. A server's ``Retry-After`` is a floor: we never come back before it asked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class RetryPolicy:
    max_attempts: int = 6  # attempts in all, the first one included
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    jitter: Literal["full", "none"] = "full"
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("delays must not be negative")

    def should_retry(self, attempt: int) -> bool:
        """Whether a failed ``attempt`` (1-based) may be followed by another one."""
        return attempt < self.max_attempts

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep after failed ``attempt`` (1-based) before the next one."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** max(0, attempt - 1)))
        wait = self.rng.uniform(0.0, ceiling) if self.jitter == "full" else ceiling
        if retry_after is not None:
            # The server knows when capacity returns; a little jitter above it avoids a thundering herd.
            wait = max(wait, retry_after + self.rng.uniform(0.0, min(1.0, 0.1 * retry_after + 0.05)))
        return wait
