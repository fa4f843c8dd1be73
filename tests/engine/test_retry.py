"""Backoff: full jitter under an exponential ceiling, capped, never earlier than Retry-After."""

from __future__ import annotations

import random

import pytest
from distill.engine.retry import RetryPolicy


def test_full_jitter_stays_under_the_exponential_ceiling():
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=30, rng=random.Random(1))
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)):
        delays = [policy.delay(attempt) for _ in range(2000)]
        assert 0 <= min(delays) and max(delays) <= ceiling
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(delays) < 0.1 * ceiling and max(delays) > 0.9 * ceiling


def test_no_jitter_is_the_ceiling():
    policy = RetryPolicy(base_delay_s=1, max_delay_s=5, jitter="none")
    assert [policy.delay(a) for a in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def test_retry_after_is_a_floor():
    policy = RetryPolicy(base_delay_s=0.01, max_delay_s=0.02, rng=random.Random(2))
    for _ in range(200):
        wait = policy.delay(1, retry_after=3.0)
        assert 3.0 <= wait <= 3.0 + 0.35 + 1e-9


def test_attempt_budget():
    policy = RetryPolicy(max_attempts=3)
    assert [policy.should_retry(a) for a in (1, 2, 3)] == [True, True, False]
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
