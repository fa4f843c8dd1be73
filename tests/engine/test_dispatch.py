"""The dispatcher against the real fake teacher: retries per class, pauses, limits, lazy jobs, stops."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from distill.engine.admission import Admission
from distill.engine.client import OpenAIChatClient
from distill.engine.dispatch import dispatch, one_endpoint
from distill.engine.retry import RetryPolicy
from distill.engine.session import EndpointSession
from distill.engine.types import CallFailure, ChatRequest, ChatResponse, Job

from distill.endpoint import Endpoint

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05, rng=random.Random(0))


def client_for(base_url: str) -> OpenAIChatClient:
    return OpenAIChatClient(Endpoint(base_url=base_url, model="fake", api_key_env=None), None)


def make_job(index: int, fault=None, reserved=200) -> Job:
    extra = {"fake_fault": fault} if fault else None
    request = ChatRequest(
        [{"role": "user", "content": f"input {index}"}], "fake", 0.3, 256, f"{index}#0", extra
    )
    return Job(index, request, reserved)


def run_dispatch(
    base_url, jobs, *, rpm=None, tpm=None, max_in_flight=16, retry=FAST_RETRY, key=None, **kwargs
):
    results: dict = {}
    calls: list = []

    def on_result(job, result):
        calls.append(job.key)
        results[job.key] = result

    async def main():
        endpoint = Endpoint(base_url=base_url, model="fake", api_key_env=None, rpm=rpm, tpm=tpm)
        session = EndpointSession(endpoint, key, concurrency=max_in_flight, retry=retry)
        try:
            outcome = await session.run(jobs, on_result, **kwargs)
        finally:
            await session.close()
        return outcome, session.admission

    outcome, admission = asyncio.run(main())
    assert len(calls) == len(set(calls)), "on_result called twice for one job"
    return outcome, results, admission


@pytest.mark.parametrize(
    ("kind", "error_class", "attempts"),
    [
        ("500", "server_error", 3),
        ("503", "server_error", 3),
        ("reset", "connection", 3),
        ("truncated", "bad_response", 3),
        ("429", "rate_limited", 3),
        ("400", "bad_request", 1),
        ("context_length", "context_length", 1),
        ("content_filter", "content_filter", 1),
    ],
)
def test_retry_classes_by_attempts_seen_at_the_server(fake_teacher_thread, kind, error_class, attempts):
    teacher = fake_teacher_thread(latency_ms=1)
    # Faults on the first two attempts: transient classes succeed on the third, permanent ones fail at once.
    outcome, results, _ = run_dispatch(teacher.base_url, [make_job(0, {"kind": kind, "times": 2})])
    assert teacher.stats()["duplicates"].get("0#0", 1) == attempts
    result = results[0]
    if attempts == 3:
        assert isinstance(result, ChatResponse) and result.attempts == 3
        assert outcome.retries[error_class] == 2
    else:
        assert isinstance(result, CallFailure) and result.error_class == error_class and result.attempts == 1
        assert outcome.failed[error_class] == 1


def test_retries_are_bounded(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)
    outcome, results, _ = run_dispatch(teacher.base_url, [make_job(0, {"kind": "500"})])
    assert teacher.stats()["duplicates"]["0#0"] == FAST_RETRY.max_attempts
    assert results[0].error_class == "server_error" and results[0].attempts == FAST_RETRY.max_attempts
    assert results[0].retryable and outcome.failed == {"server_error": 1}


def test_retry_after_slows_everyone(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)
    jobs = [make_job(0, {"kind": "429", "times": 1, "retry_after": 1})] + [make_job(i) for i in range(1, 30)]
    start = time.monotonic()
    outcome, results, admission = run_dispatch(teacher.base_url, jobs, max_in_flight=1)
    elapsed = time.monotonic() - start
    assert outcome.succeeded == 30 and outcome.retries == {"rate_limited": 1}
    # One request got the 429; the 29 others waited behind the pause instead of going on at ~1 ms each.
    assert elapsed >= 1.0
    assert admission.pauses == 1


def test_server_enforced_limit_is_respected_without_429(fake_teacher):
    # The server's bucket holds two seconds' worth (4 requests); the client paces just under 120 RPM.
    with fake_teacher(latency_ms=5, rpm=120, burst_s=2) as teacher:
        jobs = (make_job(i) for i in range(1000))
        stop = asyncio.Event()

        async def stop_later():
            await asyncio.sleep(6)
            stop.set()

        async def main():
            admission = Admission(120, None, 32)
            done = []
            async with client_for(teacher.base_url) as client:
                timer = asyncio.create_task(stop_later())
                outcome = await dispatch(
                    jobs, one_endpoint(client, admission), FAST_RETRY, lambda j, r: done.append(r), stop=stop
                )
                await timer
            return outcome, done

        outcome, done = asyncio.run(main())
        stats = teacher.stats()
    assert stats["by_status"].get("429", 0) == 0
    assert outcome.stopped_reason == "stopped"
    # 2 burst + 1.96/s over 6 s ≈ 13.8; allow for start-up.
    assert 12 <= stats["by_status"]["200"] <= 15
    assert all(isinstance(r, ChatResponse) for r in done)


def test_learnt_limits_keep_429s_rare(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=2, rpm=3000, burst_s=0.5)  # 50/s, bucket of 25
    outcome, results, admission = run_dispatch(
        teacher.base_url, [make_job(i) for i in range(150)], max_in_flight=8
    )
    assert outcome.succeeded == 150
    assert admission.limits["rpm"] == 3000
    # Before the first answer taught it the limit, the client sent without one; after that it followed it.
    assert teacher.stats()["by_status"].get("429", 0) <= 8


def test_large_generator_is_pulled_lazily_with_bounded_in_flight(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)
    total, limit = 3000, 24
    pulled = 0
    reported = 0
    max_outstanding = 0

    def jobs():
        nonlocal pulled, max_outstanding
        for i in range(total):
            pulled += 1
            max_outstanding = max(max_outstanding, pulled - reported)
            yield make_job(i)

    def on_result(job, result):
        nonlocal reported
        reported += 1

    async def main():
        async with client_for(teacher.base_url) as client:
            return await dispatch(
                jobs(), one_endpoint(client, Admission(None, None, limit)), FAST_RETRY, on_result
            )

    outcome = asyncio.run(main())
    assert outcome.succeeded == reported == total
    assert max_outstanding <= limit + 1
    assert teacher.stats()["max_in_flight"] <= limit


def test_async_iterable_jobs(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)

    async def jobs():
        for i in range(50):
            yield make_job(i)

    outcome, results, _ = run_dispatch(teacher.base_url, jobs())
    assert outcome.succeeded == 50 and sorted(results) == list(range(50))


def test_random_faults_end_as_exactly_one_report_each(fake_teacher_thread):
    teacher = fake_teacher_thread(
        latency_ms=2, error_500_rate=0.04, error_503_rate=0.02, reset_rate=0.02, truncated_rate=0.02, seed=7
    )
    jobs = [make_job(i) for i in range(400)] + [make_job(400 + i, {"kind": "400"}) for i in range(20)]
    outcome, results, _ = run_dispatch(teacher.base_url, jobs, max_in_flight=32)
    assert sorted(results) == list(range(420))
    assert outcome.succeeded + sum(outcome.failed.values()) == 420
    assert outcome.failed["bad_request"] == 20
    assert sum(outcome.retries.values()) > 0
    assert teacher.stats()["total"] == outcome.sent


def test_fatal_auth_stops_early(fake_teacher_thread, monkeypatch):
    monkeypatch.setenv("FAKE_TEACHER_KEY", "sk-right")
    teacher = fake_teacher_thread(latency_ms=5, api_key_env="FAKE_TEACHER_KEY")
    outcome, results, _ = run_dispatch(
        teacher.base_url, (make_job(i) for i in range(500)), max_in_flight=4, key="sk-wrong"
    )
    assert outcome.stopped_reason == "fatal"
    assert outcome.fatal.error_class == "auth" and "sk-wrong" not in outcome.fatal.message
    assert results == {}  # nothing recorded: a resume with the right key sends them all
    assert teacher.stats()["total"] <= 8
    assert outcome.unfinished == outcome.jobs_started


def test_stop_lets_in_flight_finish_and_admits_nothing_new(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=100)
    stop = asyncio.Event()
    reported = []

    def on_result(job, result):
        reported.append(job.key)

    async def main():
        async with client_for(teacher.base_url) as client:
            asyncio.get_running_loop().call_later(0.25, stop.set)
            return await dispatch(
                (make_job(i) for i in range(10_000)),
                one_endpoint(client, Admission(None, None, 10)),
                FAST_RETRY,
                on_result,
                stop=stop,
            )

    outcome = asyncio.run(main())
    assert outcome.stopped_reason == "stopped"
    assert outcome.jobs_started == len(reported) + outcome.unfinished
    assert 20 <= len(reported) <= 40  # ~3 rounds of 10, the in-flight round finished
    assert teacher.stats()["total"] == outcome.sent == outcome.jobs_started


def test_retrying_jobs_are_left_unreported_on_stop(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)
    stop = asyncio.Event()
    reported = []
    slow_retry = RetryPolicy(max_attempts=5, base_delay_s=5, max_delay_s=5, jitter="none")

    async def main():
        async with client_for(teacher.base_url) as client:
            asyncio.get_running_loop().call_later(0.3, stop.set)
            return await dispatch(
                [make_job(0, {"kind": "503"}), make_job(1)],
                one_endpoint(client, Admission(None, None, 4)),
                slow_retry,
                lambda j, r: reported.append(j.key),
                stop=stop,
            )

    start = time.monotonic()
    outcome = asyncio.run(main())
    assert time.monotonic() - start < 2  # the 5 s backoff was cut short
    assert reported == [1] and outcome.unfinished == 1


def test_a_failing_callback_stops_the_run_and_raises(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)

    def on_result(job, result):
        if job.key == 5:
            raise OSError(28, "No space left on device")

    async def main():
        async with client_for(teacher.base_url) as client:
            return await dispatch(
                (make_job(i) for i in range(10_000)),
                one_endpoint(client, Admission(None, None, 4)),
                FAST_RETRY,
                on_result,
            )

    with pytest.raises(OSError, match="No space left"):
        asyncio.run(main())
    assert teacher.stats()["total"] < 100


def test_cancelling_dispatch_abandons_in_flight_requests(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=300)
    reported = []

    async def main():
        async with client_for(teacher.base_url) as client:
            task = asyncio.create_task(
                dispatch(
                    (make_job(i) for i in range(100)),
                    one_endpoint(client, Admission(None, None, 8)),
                    FAST_RETRY,
                    lambda j, r: reported.append(j.key),
                )
            )
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.4)  # the answers would have arrived by now
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    leftover = asyncio.run(main())
    assert reported == [] and leftover == []
