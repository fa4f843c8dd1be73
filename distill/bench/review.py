"""`distill bench review`: how fast the review page answers over a large run, beside a small one.

Writes a synthetic run (Chinese contract-like inputs, JSON answers, two samples per input, some filter
rejections and failures) in the engine's shard format, opens it as `distill review` does, starts the page's
real HTTP server on 127.0.0.1 and times what a reviewer waits for: the first page, each kind of filter
change, a record, a decision (synced to disk). The same steps on a 100-record run are the baseline.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

_WORDS = (
    "甲方",
    "乙方",
    "合同",
    "金额",
    "人民币",
    "万元",
    "签订",
    "日期",
    "北京",
    "上海",
    "科技",
    "有限公司",
    "服务",
    "期限",
    "违约",
    "责任",
    "付款",
    "条件",
    "交付",
    "验收",
    "质量",
    "保证",
    "知识产权",
    "保密",
    "争议",
    "解决",
    "仲裁",
    "双方",
    "同意",
    "条款",
    "the",
    "party",
    "amount",
    "service",
    "contract",
)
_NAMES = (
    "北京星河科技有限公司",
    "上海云帆贸易有限公司",
    "深圳海岸数据有限公司",
    "杭州青松软件有限公司",
    "Acme Trading Ltd",
    "Globex Services Inc",
)


def _text(rng: random.Random, words: int) -> str:
    return "".join(rng.choice(_WORDS) for _ in range(words))


def write_synthetic_run(run_dir: Path, records: int, *, seed: int = 7) -> Path:
    """A run directory with ``records`` records: ~90% accepted, 8% rejected, 2% failed."""
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    task = "从合同中抽取甲方、乙方、金额和签订日期,以JSON输出。"
    with (
        (run_dir / "accepted-00000.jsonl").open("wb") as accepted,
        (run_dir / "rejected-00000.jsonl").open("wb") as rejected,
        (run_dir / "failed-00000.jsonl").open("wb") as failed,
    ):
        for n in range(records):
            row_id, sample_index = f"contract-{n // 2:06d}", n % 2
            roll = rng.random()
            if roll < 0.02:
                failed.write(
                    orjson.dumps(
                        {
                            "id": row_id,
                            "sample_index": sample_index,
                            "error_class": "timeout",
                            "message": "no answer within 120 s",
                            "status": None,
                            "attempts": 6,
                            "failed_at": "2026-01-01T00:00:00.000Z",
                        }
                    )
                    + b"\n"
                )
                continue
            answer = json.dumps(
                {
                    "甲方": "Zephyr Analytics GmbH" if n % 1000 == 999 else rng.choice(_NAMES),
                    "乙方": rng.choice(_NAMES),
                    "金额": f"{rng.randint(1, 999)}万元",
                    "日期": f"2024年{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
                },
                ensure_ascii=False,
            )
            thinking = _text(rng, rng.randint(40, 160))
            record = {
                "id": row_id,
                "sample_index": sample_index,
                "instruction": f"{task}\n\n{_text(rng, rng.randint(150, 400))}",
                "thinking": thinking,
                "output": answer,
                "full_output": f"【思考】{thinking}\n\n【答案】{answer}",
                "source_model": "teacher",
                "generated_at": "2026-01-01T00:00:00.000Z",
                "temperature": 0.3,
                "usage": {"prompt_tokens": 600, "completion_tokens": 200},
                "latency_ms": 800.0,
                "finish_reason": "stop",
            }
            if roll < 0.10:
                record["reject_reason"] = rng.choice(("too_short", "duplicate", "similar_to_instruction"))
                rejected.write(orjson.dumps(record) + b"\n")
            else:
                accepted.write(orjson.dumps(record) + b"\n")
    return run_dir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """The review server in a thread of this process, as `distill review` runs it."""

    def __init__(self, session: Any) -> None:
        from distill.review.server import serve

        self.port = _free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop_event: asyncio.Event | None = None

        async def main() -> None:
            self.stop_event = asyncio.Event()
            task = asyncio.create_task(
                serve(
                    session,
                    host="127.0.0.1",
                    port=self.port,
                    token=None,
                    say=lambda _: self.ready.set(),
                    stop=self.stop_event,
                )
            )
            await task

        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(main()), daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the review server did not start")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=60) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)


QUERIES = {
    "first page": "/api/records?offset=0&limit=50",
    "status=accepted, unreviewed": "/api/records?status=accepted&decision=unreviewed&limit=50",
    "reason=duplicate": "/api/records?reason=duplicate&limit=50",
    "length 80–120": "/api/records?min_len=80&max_len=120&limit=50",
    "sort by agreement": "/api/records?sort=agreement&limit=50",
    "sort by length, page 500": "/api/records?sort=-length&offset=25000&limit=50",
    "search, rare 3+ chars (Zephyr Analytics)": "/api/records?q=Zephyr%20Analytics&limit=50",
    "search, common 4 chars (有限公司)": "/api/records?q=%E6%9C%89%E9%99%90%E5%85%AC%E5%8F%B8&limit=50",
    "search, 2 chars (违约)": "/api/records?q=%E8%BF%9D%E7%BA%A6&limit=50",
    "then a filter change (违约 + accepted + by length)": "/api/records?q=%E8%BF%9D%E7%BA%A6&status=accepted&sort=length&limit=50",
    "progress counts": "/api/progress",
}


def _ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(run_dir: Path, repeats: int) -> dict[str, Any]:
    """Open as `distill review` does (index in the background), then time each request: the first time
    (cold: a search text not seen before) and the median of ``repeats`` more."""
    from distill.review.config import ReviewConfig
    from distill.review.session import RunReview

    figures: dict[str, Any] = {}
    started = time.perf_counter()
    session = RunReview(run_dir, ReviewConfig(), "bench")
    server = _Server(session)
    try:
        first = server.get("/api/records?offset=0&limit=50")
        figures["start to first page served s"] = round(time.perf_counter() - started, 3)
        figures["records on that first page's list"] = first["total"]
        while session.index.indexing()["pending_bytes"]:
            time.sleep(0.05)
        figures["every record listed after s"] = round(time.perf_counter() - started, 3)
        session.index.wait_until_current()
        figures["trigram search index complete after s"] = round(time.perf_counter() - started, 3)
        for name, path in QUERIES.items():
            cold = _timed(lambda path=path: server.get(path))
            warm = [_timed(lambda path=path: server.get(path)) for _ in range(repeats)]
            figures[f"{name} ms"] = {"first": _ms(cold), "again, median": _ms(statistics.median(warm))}
        row = server.get("/api/records?status=accepted&limit=1")["rows"][0]["row"]
        figures["open a record ms"] = _ms(
            statistics.median([_timed(lambda: server.get(f"/api/records/{row}")) for _ in range(repeats)])
        )
        rows = server.get(f"/api/records?status=accepted&limit={repeats}")["rows"]
        figures["decision saved (fsync) ms"] = _ms(
            statistics.median(
                [
                    _timed(
                        lambda r=r: server.post(f"/api/records/{r['row']}/decision", {"decision": "approve"})
                    )
                    for r in rows
                ]
            )
        )
    finally:
        server.close()
        session.close()
    started = time.perf_counter()
    session = RunReview(run_dir, ReviewConfig(), "bench")
    server = _Server(session)
    try:
        server.get("/api/records?offset=0&limit=50")
        figures["reopen: start to first page served s"] = round(time.perf_counter() - started, 3)
    finally:
        server.close()
        session.close()
    return figures


def run_bench(records: int, baseline_records: int, repeats: int, work_dir: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        results = {}
        for label, count in (("baseline", baseline_records), ("large", records)):
            run_dir = Path(scratch) / f"run-{count}"
            started = time.perf_counter()
            write_synthetic_run(run_dir, count)
            written = time.perf_counter() - started
            size = sum(path.stat().st_size for path in run_dir.glob("*.jsonl"))
            results[label] = {
                "records": count,
                "shard_mb": round(size / 1e6, 1),
                "written_s": round(written, 1),
                **measure(run_dir, repeats),
            }
        return results


class ReviewBenchConfig(BaseModel):
    """``distill bench review``'s settings."""

    model_config = ConfigDict(extra="forbid")

    records: int = Field(default=100_000, ge=1, description="records of the large run")
    baseline_records: int = Field(default=100, ge=1, description="records of the small run timed beside it")
    repeats: int = Field(default=5, ge=1, description="times each step is timed")
    work_dir: Path | None = Field(
        default=None, description="where the synthetic runs are written (default: the system temp dir)"
    )


def bench_review(config: ReviewBenchConfig) -> int:
    """Time the page on both runs and print the figures as JSON."""
    report = run_bench(config.records, config.baseline_records, config.repeats, config.work_dir)
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0
