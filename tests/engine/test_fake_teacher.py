"""The fake teacher as a real subprocess: protocol, counting, limits and headers, faults, answers, config."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

from distill.testing.fake_teacher_answers import (
    EN_REFUSAL,
    ZH_REFUSAL,
    cot_answer,
    count_tokens,
    split_stream_pieces,
    truncate_to_tokens,
)
from distill.testing.fake_teacher_faults import format_duration

ZH_PROMPT = "你是一个专家级AI助手。\n任务说明:提取合同金额\n输入内容:\n甲方向乙方支付人民币十万元。\n【思考过程】\n【最终答案】"
EN_PROMPT = "You are an expert.\nTask: extract the amount\nInput:\nParty A pays 100,000 USD.\n[Thinking]\n[Final Answer]"


def post(url, body, headers=None):
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def chat(prompt, **extra):
    return {"model": "m", "messages": [{"role": "user", "content": prompt}], "temperature": 0.3, **extra}


def test_startup_line_models_and_duplicate_counting(fake_teacher):
    with fake_teacher(latency_ms=1, model="teacher-x") as teacher:
        assert teacher.base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(teacher.base_url + "/v1/models") as response:
            assert json.loads(response.read())["data"][0]["id"] == "teacher-x"
        for request_id in ("a#0", "a#0", "a#0", "b#0"):
            status, _, body = post(teacher.base_url, chat(EN_PROMPT), {"X-Client-Request-Id": request_id})
            assert status == 200
        stats = teacher.stats()
        assert stats["total"] == 4 and stats["by_status"] == {"200": 4}
        assert stats["duplicates"] == {"a#0": 3} and stats["duplicate_requests"] == 2
        assert stats["unique_ids"] == 2
        teacher.reset_stats()
        assert teacher.stats()["total"] == 0
        # The second line tells a human what this is.
        second = teacher.process.stdout.readline()
    assert "not a teacher" in second


def test_completion_body_and_usage(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)
    status, headers, raw = post(teacher.base_url, chat(ZH_PROMPT), {"X-Client-Request-Id": "c1#0"})
    body = json.loads(raw)
    text = body["choices"][0]["message"]["content"]
    assert status == 200 and body["object"] == "chat.completion"
    assert text.startswith("【思考过程】") and "【最终答案】" in text
    assert body["usage"] == {
        "prompt_tokens": count_tokens(ZH_PROMPT),
        "completion_tokens": count_tokens(text),
        "total_tokens": count_tokens(ZH_PROMPT) + count_tokens(text),
    }
    assert "x-ratelimit-limit-requests" not in {k.lower() for k in headers}  # no limits configured


def test_answers_are_deterministic_and_differ_per_sample():
    first = cot_answer(EN_PROMPT, "x#0", 0.3)
    assert first == cot_answer(EN_PROMPT, "x#0", 0.3)
    assert first != cot_answer(EN_PROMPT, "x#1", 0.8)
    assert first.startswith("[Thinking]") and "[Final Answer]" in first
    answer = first.split("[Final Answer]")[1].strip()
    assert len(answer) >= 50
    assert cot_answer(ZH_PROMPT, "x#0", 0.3).startswith("【思考过程】")


def test_bad_answer_kinds():
    assert cot_answer(ZH_PROMPT, "x", 0.3, kind="refusal") == ZH_REFUSAL
    assert cot_answer(EN_PROMPT, "x", 0.3, kind="refusal") == EN_REFUSAL
    assert "[Final Answer]" not in cot_answer(EN_PROMPT, "x", 0.3, kind="bad_format")
    short = cot_answer(ZH_PROMPT, "x", 0.3, kind="short").split("【最终答案】")[1].strip()
    assert len(short) < 50


def test_bad_answer_rates(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=0, refusal_rate=0.2, short_rate=0.2, bad_format_rate=0.2, seed=3)
    kinds = {"refusal": 0, "bad_format": 0, "good_or_short": 0}
    for i in range(300):
        text = json.loads(post(teacher.base_url, chat(ZH_PROMPT), {"X-Client-Request-Id": f"{i}#0"})[2])[
            "choices"
        ][0]["message"]["content"]
        if text == ZH_REFUSAL:
            kinds["refusal"] += 1
        elif "【最终答案】" not in text:
            kinds["bad_format"] += 1
        else:
            kinds["good_or_short"] += 1
    assert 35 <= kinds["refusal"] <= 85 and 35 <= kinds["bad_format"] <= 85


def test_max_tokens_truncates_with_finish_reason_length(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=0)
    body = json.loads(post(teacher.base_url, chat(EN_PROMPT, max_tokens=10))[2])
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 10


def test_streaming_events_end_with_usage_and_done(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=1)
    status, headers, raw = post(
        teacher.base_url, chat(EN_PROMPT, stream=True, stream_options={"include_usage": True})
    )
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = [line[len("data: ") :] for line in raw.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.startswith("[Thinking]")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == count_tokens(text)


def test_rate_limits_answer_429_with_openai_headers(fake_teacher):
    with fake_teacher(latency_ms=0, rpm=60, tpm=100000, burst_s=3) as teacher:  # 3 requests of burst
        results = [post(teacher.base_url, chat(EN_PROMPT)) for _ in range(4)]
        statuses = [status for status, _, _ in results]
        assert statuses == [200, 200, 200, 429]
        ok_headers, limited_headers = results[0][1], results[3][1]
        assert ok_headers["x-ratelimit-limit-requests"] == "60"
        assert ok_headers["x-ratelimit-remaining-requests"] == "2"
        assert ok_headers["x-ratelimit-limit-tokens"] == "100000"
        assert int(ok_headers["x-ratelimit-remaining-tokens"]) < 5000
        assert limited_headers["retry-after"] == "1"
        assert 900 <= int(limited_headers["retry-after-ms"]) <= 1000
        assert json.loads(results[3][2])["error"]["code"] == "rate_limit_exceeded"
        time.sleep(1.0)
        assert post(teacher.base_url, chat(EN_PROMPT))[0] == 200
        assert teacher.stats()["by_status"] == {"200": 4, "429": 1}


def test_random_faults_follow_their_rates(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=0, error_500_rate=0.2, error_503_rate=0.1, seed=11)
    statuses = [
        post(teacher.base_url, chat(EN_PROMPT), {"X-Client-Request-Id": f"{i}#0"})[0] for i in range(300)
    ]
    assert 35 <= statuses.count(500) <= 85 and 12 <= statuses.count(503) <= 50
    # Decisions hang on (seed, id, attempt): the same ids meet the same fate on a fresh server.
    again = fake_teacher_thread(latency_ms=0, error_500_rate=0.2, error_503_rate=0.1, seed=11)
    assert [
        post(again.base_url, chat(EN_PROMPT), {"X-Client-Request-Id": f"{i}#0"})[0] for i in range(50)
    ] == statuses[:50]


def test_latency_distributions(fake_teacher_thread):
    teacher = fake_teacher_thread(latency_ms=60, latency_distribution="lognormal", latency_spread_ms=20)
    times = []
    for i in range(12):
        start = time.perf_counter()
        post(teacher.base_url, chat(EN_PROMPT), {"X-Client-Request-Id": f"{i}"})
        times.append((time.perf_counter() - start) * 1000)
    assert 35 < sum(times) / len(times) < 110
    assert max(times) - min(times) > 5  # it varies


def test_config_file_and_bad_key(tmp_path):
    config = tmp_path / "fake.yaml"
    config.write_text("latency_ms: 5\nrpm: 100\nlatncy_spread_ms: 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "distill", "serve-fake-teacher", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{config}:3: latncy_spread_ms: unknown key" in result.stderr


def test_help_says_it_is_not_a_teacher():
    result = subprocess.run(
        [sys.executable, "-m", "distill", "serve-fake-teacher", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "not a teacher" in result.stdout.replace("\n", " ")


def test_token_rule_and_helpers():
    assert count_tokens("") == 0
    assert count_tokens("abcd") == 1 and count_tokens("abcde") == 2
    assert count_tokens("你好") == 2 and count_tokens("你好ab") == 3
    text = "[Thinking] 一二三 abcdefgh"
    assert "".join(split_stream_pieces(text)) == text
    assert count_tokens(truncate_to_tokens(text, 5)) == 5
    assert [format_duration(s) for s in (0.02, 1, 1.5, 360)] == ["20ms", "1s", "1.5s", "6m0s"]


def test_responder_is_pluggable(fake_teacher_thread):
    teacher = fake_teacher_thread(lambda body: "REF:" + body["messages"][-1]["content"][:5], latency_ms=0)
    body = json.loads(post(teacher.base_url, chat("hello world"))[2])
    assert body["choices"][0]["message"]["content"] == "REF:hello"
