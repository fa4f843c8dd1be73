"""Pools of endpoints over real HTTP: one refuses every key, one dies mid-run, one rate-limits, and the run
still ends with exactly one record per (id, sample); weights share the work; a key rotated and a replica
added between two runs resume without re-sending finished work; keys never reach an output."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from distill.engine import pool as pool_module
from distill.engine.config import GenerateConfig
from distill.engine.records import iter_records
from distill.engine.runner import run_generation

from distill.endpoint import Endpoint

KEYS = {"POOL_KEY_A": "sk-pool-aaaaaaaaaaaaaaaaaaaa", "POOL_KEY_B": "sk-pool-bbbbbbbbbbbbbbbbbbbb"}


def write_inputs(path: Path, rows: int, start: int = 0) -> Path:
    with path.open("a", encoding="utf-8") as handle:
        for i in range(start, start + rows):
            handle.write(json.dumps({"id": f"c{i}", "input": f"合同{i}:甲方A公司,乙方B公司。"}) + "\n")
    return path


def endpoint(base_url: str, **fields) -> Endpoint:
    settings = {"base_url": base_url + "/v1", "model": "fake-teacher", "api_key_env": None, "concurrency": 8}
    return Endpoint(**{**settings, **fields})


def config(tmp_path: Path, endpoints: list[Endpoint], **settings) -> GenerateConfig:
    return GenerateConfig(
        input=tmp_path / "in.jsonl",
        output_dir=tmp_path / "run",
        teacher=endpoints[0],
        pool=endpoints[1:],
        task="抽取合同要素",
        max_tokens=256,
        **settings,
    )


def record_counts(run_dir: Path) -> Counter:
    """How many records each (id, sample) has across every shard: exactly-once means all ones."""
    return Counter((record.id, record.sample_index) for record in iter_records(run_dir))


def everything_written(run_dir: Path, summary: dict) -> str:
    files = "".join(p.read_text("utf-8", "replace") for p in run_dir.rglob("*") if p.is_file())
    return files + json.dumps(summary)


def test_a_pool_survives_a_refused_key_a_dead_endpoint_and_a_rate_limit(
    tmp_path, fake_teacher, fake_teacher_thread, monkeypatch
):
    monkeypatch.setenv("POOL_SERVER_KEY", KEYS["POOL_KEY_A"])
    monkeypatch.setenv("POOL_KEY_B", KEYS["POOL_KEY_B"])
    write_inputs(tmp_path / "in.jsonl", 150)
    healthy = fake_teacher_thread(latency_ms=20)
    limited = fake_teacher_thread(latency_ms=5, rpm=300, burst_s=1)
    refusing = fake_teacher_thread(latency_ms=5, api_key_env="POOL_SERVER_KEY")  # wants key A, gets key B
    with fake_teacher(latency_ms=40) as dying:
        endpoints = [
            endpoint(healthy.base_url, label="healthy"),
            endpoint(refusing.base_url, label="refusing", api_key_env="POOL_KEY_B"),
            endpoint(dying.base_url, label="dying", concurrency=16),
            endpoint(limited.base_url, label="limited", rpm=300),
        ]

        def kill_when_busy() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if dying.stats()["by_status"].get("200", 0) >= 15:
                        break
                except OSError:
                    return
                time.sleep(0.02)
            os.killpg(dying.process.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_busy)
        killer.start()
        summary = run_generation(config(tmp_path, endpoints, samples_per_input=2), progress=False)
        killer.join()
    assert summary["status"] == "complete", summary
    counts = record_counts(tmp_path / "run")
    assert set(counts) == {(f"c{i}", s) for i in range(150) for s in range(2)} and max(counts.values()) == 1
    assert summary["records"]["failed"] == 0
    figures = {e["endpoint"]: e for e in summary["endpoints"]}
    assert figures["refusing"]["answers"] == 0 and figures["refusing"]["errors"].get("auth", 0) >= 1
    assert figures["refusing"]["state"] in ("out", "dead")
    assert figures["dying"]["answers"] >= 15 and figures["dying"]["errors"].get("connection", 0) >= 1
    assert figures["healthy"]["answers"] > 0 and figures["limited"]["answers"] > 0
    assert sum(e["answers"] for e in figures.values()) == 300
    assert limited.stats()["by_status"].get("429", 0) <= 2
    text = everything_written(tmp_path / "run", summary)
    assert KEYS["POOL_KEY_A"] not in text and KEYS["POOL_KEY_B"] not in text


def test_weights_share_the_work(tmp_path, fake_teacher_thread):
    write_inputs(tmp_path / "in.jsonl", 400)
    heavy, light = fake_teacher_thread(latency_ms=20), fake_teacher_thread(latency_ms=20)
    endpoints = [
        # Room for every request at once: the weights, not the limits, decide the shares.
        endpoint(heavy.base_url, label="heavy", weight=3, concurrency=1000),
        endpoint(light.base_url, label="light", weight=1, concurrency=1000),
    ]
    summary = run_generation(config(tmp_path, endpoints), progress=False)
    assert summary["status"] == "complete"
    share = heavy.stats()["total"] / light.stats()["total"]
    assert 2.0 <= share <= 4.5, share


def test_when_every_endpoint_is_dead_the_run_stops_resumable(tmp_path, fake_teacher_thread, monkeypatch):
    monkeypatch.setattr(pool_module, "_FIRST_OUT_S", 0.05)
    monkeypatch.setenv("POOL_SERVER_KEY", KEYS["POOL_KEY_A"])
    monkeypatch.setenv("POOL_KEY_B", KEYS["POOL_KEY_B"])
    write_inputs(tmp_path / "in.jsonl", 30)
    first = fake_teacher_thread(latency_ms=1, api_key_env="POOL_SERVER_KEY")
    second = fake_teacher_thread(latency_ms=1, api_key_env="POOL_SERVER_KEY")
    endpoints = [endpoint(server.base_url, api_key_env="POOL_KEY_B") for server in (first, second)]
    summary = run_generation(config(tmp_path, endpoints), progress=False)
    assert summary["status"] == "fatal" and "every endpoint of the pool failed" in summary["message"]
    assert summary["records"] == {"accepted": 0, "rejected": 0, "failed": 0}
    assert KEYS["POOL_KEY_B"] not in summary["message"]
    # The right key: the same run resumes and completes.
    monkeypatch.setenv("POOL_KEY_B", KEYS["POOL_KEY_A"])
    again = run_generation(config(tmp_path, endpoints), progress=False)
    assert again["status"] == "complete" and sum(record_counts(tmp_path / "run").values()) == 30


def test_a_rotated_key_and_an_added_replica_resume_without_resending(
    tmp_path, fake_teacher_thread, monkeypatch
):
    write_inputs(tmp_path / "in.jsonl", 20)
    monkeypatch.setenv("POOL_SERVER_KEY", KEYS["POOL_KEY_A"])
    monkeypatch.setenv("POOL_CLIENT_KEY", KEYS["POOL_KEY_A"])
    old = fake_teacher_thread(latency_ms=1, api_key_env="POOL_SERVER_KEY")
    first = run_generation(
        config(tmp_path, [endpoint(old.base_url, api_key_env="POOL_CLIENT_KEY")]), progress=False
    )
    assert first["status"] == "complete" and old.stats()["total"] == 20
    # The key is rotated (the server now wants B), a replica joins, and 10 rows arrive.
    write_inputs(tmp_path / "in.jsonl", 10, start=20)
    monkeypatch.setenv("POOL_SERVER_KEY", KEYS["POOL_KEY_B"])
    monkeypatch.setenv("POOL_CLIENT_KEY", KEYS["POOL_KEY_B"])
    rotated = fake_teacher_thread(latency_ms=1, api_key_env="POOL_SERVER_KEY")
    replica = fake_teacher_thread(latency_ms=1, api_key_env="POOL_SERVER_KEY")
    endpoints = [endpoint(server.base_url, api_key_env="POOL_CLIENT_KEY") for server in (rotated, replica)]
    second = run_generation(config(tmp_path, endpoints), progress=False)
    assert second["status"] == "complete"
    assert rotated.stats()["total"] + replica.stats()["total"] == 10  # only the new rows were sent
    counts = record_counts(tmp_path / "run")
    assert len(counts) == 30 and max(counts.values()) == 1


def test_pool_endpoints_share_the_teachers_price():
    price = {"input_per_million": 1.0, "output_per_million": 2.0}
    same = GenerateConfig(
        input="in.jsonl",
        output_dir="out",
        teacher=endpoint("http://127.0.0.1:1", price=price),
        pool=[endpoint("http://127.0.0.1:2")],
    )
    assert same.pool[0].price == same.teacher.price
    with pytest.raises(ValueError, match="pool.0.price differs from teacher.price"):
        GenerateConfig(
            input="in.jsonl",
            output_dir="out",
            teacher=endpoint("http://127.0.0.1:1", price=price),
            pool=[endpoint("http://127.0.0.1:2", price={**price, "output_per_million": 3.0})],
        )
