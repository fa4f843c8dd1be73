"""Error classification: which answers are retried, which fail at once, which stop the run."""

from __future__ import annotations

import email.utils
import time

import pytest
from distill.engine.errors import FATAL_CLASSES, RETRYABLE_CLASSES, classify_status, parse_retry_after


@pytest.mark.parametrize(
    ("status", "body", "error_class", "retryable"),
    [
        (429, {"error": {"code": "rate_limit_exceeded", "message": "slow down"}}, "rate_limited", True),
        (
            429,
            {"error": {"code": "insufficient_quota", "type": "insufficient_quota"}},
            "quota_exceeded",
            False,
        ),
        (500, b"oops", "server_error", True),
        (502, b"<html>bad gateway</html>", "server_error", True),
        (503, None, "server_error", True),
        (408, None, "timeout", True),
        (409, None, "server_error", True),
        (400, {"error": {"code": "context_length_exceeded", "message": "too long"}}, "context_length", False),
        (
            400,
            {"error": {"message": "This model's maximum context length is 2048 tokens"}},
            "context_length",
            False,
        ),
        (413, b"", "context_length", False),
        (400, {"error": {"code": "content_filter", "message": "filtered"}}, "content_filter", False),
        (400, {"error": {"message": "invalid 'temperature'"}}, "bad_request", False),
        (422, b'{"detail": "bad"}', "bad_request", False),
        (401, {"error": {"message": "bad key"}}, "auth", False),
        (403, None, "auth", False),
        (404, {"error": {"code": "model_not_found"}}, "not_found", False),
        (400, {"error": {"code": "model_not_found", "message": "no such model"}}, "not_found", False),
    ],
)
def test_classify_status(status, body, error_class, retryable):
    error = classify_status(status, body)
    assert (error.error_class, error.retryable, error.status) == (error_class, retryable, status)
    assert error.message.startswith(f"HTTP {status}")


def test_fatal_classes_are_not_retried():
    assert FATAL_CLASSES == {"auth", "quota_exceeded", "not_found", "redirect", "endpoints_down"}
    assert not FATAL_CLASSES & RETRYABLE_CLASSES
    assert classify_status(401, None).fatal and not classify_status(500, None).fatal


def test_body_message_is_kept_short_and_readable():
    error = classify_status(400, {"error": {"message": "x" * 5000}})
    assert len(error.message) < 400


def test_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "1.5", "retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "nonsense"}) is None
    assert parse_retry_after({}) is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after({"retry-after": future}) <= 31
    assert classify_status(429, None, {"retry-after": "3"}).retry_after == 3.0
