"""The admission benchmark runs and shows what it is there to show: under a TPM limit, charging the whole
reservation (aiolimiter) admits a fraction of what charging real usage (the engine) does."""

from __future__ import annotations

from distill.bench.admission import run


def test_engine_admission_uses_the_paid_for_rate_and_aiolimiter_cannot():
    figures = run(seconds=3.0, warmup_s=1.0, pairs=2000)
    assert figures["engine"]["share_of_tpm_used"] > 0.8
    assert figures["aiolimiter"]["share_of_tpm_used"] < 0.5
    assert figures["aiolimiter_request_above_capacity"].startswith("ValueError")
    assert figures["cpu_us_per_acquire_release"]["engine"] > 0
