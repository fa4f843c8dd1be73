"""The pool benchmark at a small size: four real fake-teacher processes at 600 RPM each, then one killed."""

from __future__ import annotations

import pytest

from distill.bench.pool import kill, rate

pytestmark = pytest.mark.slow


def test_pool_rate_and_kill_at_a_small_size(tmp_path):
    figures = rate(tmp_path, seconds=12)
    assert figures["status"] == "complete" and figures["responses_429"] == 0
    assert figures["share_of_summed_limit"] >= 0.9  # a short window; the full run is held to 97%
    killed = kill(tmp_path, rows=300, kill_after=30)
    assert killed["exactly_once"] and killed["status"] == "complete" and killed["victim_state"] != "up"
    assert killed["resent"] <= 64
