"""Admission control: token-bucket arithmetic, in-flight slots, pauses, learning from headers, no polling."""

from __future__ import annotations

import asyncio
import resource
import time

import pytest
from distill.engine.admission import Admission, LimitError, TokenBucket, parse_reset


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5), ("17", 17.0)],
)
def test_parse_reset(text, seconds):
    assert parse_reset(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5x", "1s garbage"])
def test_parse_reset_rejects_junk(text):
    assert parse_reset(text) is None


def test_bucket_refills_and_goes_into_debt():
    bucket = TokenBucket(per_minute=600, burst_s=1.0, now=0.0)  # 10/s, capacity 10
    assert bucket.capacity == 10 and bucket.wait_for(10, 0.0) == 0
    bucket.level -= 10
    assert bucket.wait_for(1, 0.0) == pytest.approx(0.1)
    assert bucket.wait_for(1, 0.05) == pytest.approx(0.05)
    # A reservation above capacity waits only for a full bucket, then leaves a debt.
    bucket.refill(100.0)
    assert bucket.wait_for(1000, 100.0) == 0
    bucket.level -= 1000
    assert bucket.wait_for(1, 100.0) == pytest.approx(99.1)


def run(coro):
    return asyncio.run(coro)


def test_requests_per_minute_paces_after_the_burst():
    async def scenario():
        admission = Admission(rpm=1200, tpm=None, max_in_flight=100, headroom=0)  # 20/s, burst 20
        stamps = []
        start = time.monotonic()
        for _ in range(30):
            await admission.acquire()
            stamps.append(time.monotonic() - start)
        return stamps

    stamps = run(scenario())
    assert stamps[19] < 0.05  # the burst goes at once
    assert stamps[29] == pytest.approx(0.5, abs=0.1)  # then 20/s


def test_headroom_paces_just_under_the_limit():
    async def scenario():
        admission = Admission(rpm=6000, tpm=None, max_in_flight=1000, burst_s=0.1)  # 100/s less 2%
        for _ in range(10):  # the burst
            await admission.acquire()
        start = time.monotonic()
        for _ in range(98):
            await admission.acquire()
        return time.monotonic() - start, admission.limits

    elapsed, limits = run(scenario())
    assert elapsed == pytest.approx(1.0, abs=0.06)
    assert limits["rpm"] == 6000


def test_token_reservation_is_corrected_from_usage():
    async def scenario():
        admission = Admission(rpm=None, tpm=6000, max_in_flight=100, headroom=0)  # 100 tokens/s, capacity 100
        await admission.acquire(100)
        # Without the correction the next 100-token reservation would wait ~1 s.
        admission.release(100, used_tokens=20)
        start = time.monotonic()
        await admission.acquire(100)
        return time.monotonic() - start

    assert 0.1 < run(scenario()) < 0.4  # needed 20 more tokens: ~0.2 s


def test_a_reservation_larger_than_the_bucket_does_not_deadlock():
    async def scenario():
        admission = Admission(rpm=None, tpm=6000, max_in_flight=10)  # 100 tokens/s, capacity 100
        await asyncio.wait_for(admission.acquire(5000), timeout=1)
        admission.release(5000, used_tokens=10)
        await asyncio.wait_for(admission.acquire(5000), timeout=3)
        return admission.snapshot()

    snapshot = run(scenario())
    assert snapshot["in_flight"] == 1


def test_a_reservation_above_the_whole_minute_is_refused_not_queued():
    async def scenario():
        admission = Admission(rpm=None, tpm=600, max_in_flight=10)
        await admission.acquire(600)  # exactly a minute's worth: admitted
        with pytest.raises(LimitError, match=r"reserves 5,000 tokens .* limit is 600 \(teacher.tpm\)"):
            await admission.acquire(5000)
        admission.observe_headers({"x-ratelimit-limit-tokens": "400"})
        with pytest.raises(
            LimitError, match=r"limit is 400 \(learnt from the server's x-ratelimit headers\)"
        ):
            await admission.acquire(500)

    run(scenario())


def test_in_flight_cap_waits_for_a_release():
    async def scenario():
        admission = Admission(rpm=None, tpm=None, max_in_flight=2)
        await admission.acquire()
        await admission.acquire()
        third = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0.05)
        blocked = not third.done()
        admission.release()
        await asyncio.wait_for(third, 1)
        return blocked, admission.in_flight

    assert run(scenario()) == (True, 2)


def test_pause_holds_everyone_and_drains_the_burst():
    async def scenario():
        admission = Admission(rpm=6000, tpm=None, max_in_flight=100)
        await admission.acquire()
        admission.release()
        admission.pause(0.3)
        start = time.monotonic()
        await asyncio.gather(*(admission.acquire() for _ in range(3)))
        return time.monotonic() - start, admission.snapshot()

    waited, snapshot = run(scenario())
    assert waited >= 0.29
    assert snapshot["pauses"] == 1


def test_cancelled_waiter_does_not_block_the_queue():
    async def scenario():
        admission = Admission(rpm=None, tpm=None, max_in_flight=1)
        await admission.acquire()
        first = asyncio.create_task(admission.acquire())
        second = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0.01)
        first.cancel()
        admission.release()
        await asyncio.wait_for(second, 1)
        return admission.in_flight, first.cancelled()

    assert run(scenario()) == (1, True)


def test_waiting_sleeps_instead_of_polling():
    async def scenario():
        admission = Admission(rpm=60, tpm=None, max_in_flight=10, burst_s=1.0, headroom=0)  # 1/s, capacity 1
        await admission.acquire()
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        start = time.monotonic()
        await asyncio.gather(*(admission.acquire() for _ in range(2)))  # ~2 s of waiting
        after = resource.getrusage(resource.RUSAGE_SELF)
        used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
        return time.monotonic() - start, used

    waited, cpu_s = run(scenario())
    assert waited == pytest.approx(2.0, abs=0.2)
    assert cpu_s < 0.1


def test_limits_are_learnt_from_headers():
    async def scenario():
        admission = Admission(rpm=None, tpm=100_000, max_in_flight=10, headroom=0)
        admission.observe_headers(
            {
                "x-ratelimit-limit-requests": "600",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "100ms",
                "x-ratelimit-limit-tokens": "50000",
                "x-ratelimit-remaining-tokens": "49000",
                "x-ratelimit-reset-tokens": "1.2s",
            }
        )
        start = time.monotonic()
        await admission.acquire(10)  # the server said no request is left: wait for one (0.1 s at 10/s)
        return time.monotonic() - start, admission.snapshot()

    waited, snapshot = run(scenario())
    assert snapshot["limits"]["rpm"] == 600
    assert snapshot["limits"]["tpm"] == 50000  # the stricter of configured and learnt
    assert snapshot["server"]["reset_requests_s"] == pytest.approx(0.1)
    assert snapshot["server"]["reset_tokens_s"] == pytest.approx(1.2)
    assert 0.07 < waited < 0.3


def test_learning_can_be_turned_off():
    admission = Admission(rpm=None, tpm=None, max_in_flight=1, learn_limits=False)
    admission.observe_headers({"x-ratelimit-limit-requests": "60"})
    assert admission.limits["rpm"] is None


def test_snapshot_counts_live_rates():
    async def scenario():
        admission = Admission(rpm=None, tpm=None, max_in_flight=50)
        for _ in range(30):
            await admission.acquire(10)
        for _ in range(30):
            admission.release(10, used_tokens=7)
        return admission.snapshot()

    snapshot = run(scenario())
    assert snapshot["in_flight"] == 0
    # 30 requests within the first second count as a 30/min lower bound (span floored at 1 s).
    assert snapshot["rpm"] == pytest.approx(30 * 60, rel=0.01)
    assert snapshot["tpm"] == pytest.approx(210 * 60, rel=0.01)
