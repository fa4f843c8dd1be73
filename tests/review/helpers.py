"""Review fixtures: run directories in the engine's shard format, and the real `distill review` server.

``review_server`` starts ``python -m distill review RUN_DIR --port 0`` as a subprocess in its own process
group, reads the printed URL, and stops it (SIGTERM, or the test's own SIGKILL) at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from distill.engine.parsing import format_full_output

TASK = "从合同中抽取甲方、乙方和金额,以JSON输出。"


def record(
    row_id: str,
    sample_index: int,
    output: str | None,
    *,
    thinking: str = "先找甲方,再找乙方和金额。",
    instruction: str | None = None,
    reject_reason: str | None = None,
) -> dict[str, Any]:
    """One record as the engine writes it (accepted, or rejected with ``reject_reason``)."""
    data = {
        "id": row_id,
        "sample_index": sample_index,
        "instruction": instruction
        or f"{TASK}\n\n合同{row_id}:甲方北京星河科技有限公司,乙方上海云帆贸易有限公司。",
        "thinking": thinking,
        "output": output,
        "full_output": format_full_output(thinking, output) if output is not None else None,
        "source_model": "teacher-1",
        "generated_at": "2026-01-01T00:00:00.000Z",
        "temperature": 0.3,
        "usage": {"prompt_tokens": 100, "completion_tokens": 50},
        "latency_ms": 300.0,
        "finish_reason": "stop",
    }
    if reject_reason:
        data["reject_reason"] = reject_reason
    return data


def failure(row_id: str, sample_index: int) -> dict[str, Any]:
    return {
        "id": row_id,
        "sample_index": sample_index,
        "error_class": "timeout",
        "message": "no answer in 120 s",
        "status": None,
        "attempts": 6,
        "failed_at": "2026-01-01T00:00:00.000Z",
    }


def contract_answer(first: str, second: str, amount: str) -> str:
    return json.dumps({"甲方": first, "乙方": second, "金额": amount}, ensure_ascii=False)


def write_shard(run_dir: Path, kind: str, records: list[dict[str, Any]], index: int = 0) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{kind}-{index:05d}.jsonl"
    with path.open("ab") as handle:
        for item in records:
            handle.write(orjson.dumps(item) + b"\n")
    return path


def small_run(run_dir: Path, inputs: int = 6) -> Path:
    """``inputs`` contracts × 2 samples accepted, one rejected as too short, one failed."""
    accepted = []
    for n in range(inputs):
        accepted.append(
            record(
                f"c{n}", 0, contract_answer("北京星河科技有限公司", "上海云帆贸易有限公司", f"{n + 1}0万元")
            )
        )
        accepted.append(
            record(
                f"c{n}", 1, contract_answer("北京星河科技有限公司", "杭州青松软件有限公司", f"{n + 1}0万元")
            )
        )
    write_shard(run_dir, "accepted", accepted)
    write_shard(run_dir, "rejected", [record("c99", 0, "太短", reject_reason="too_short")])
    write_shard(run_dir, "failed", [failure("c98", 0)])
    return run_dir


@dataclass
class ReviewServer:
    url: str
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        request = urllib.request.Request(
            self.url.split("?")[0].rstrip("/") + path, data=data, method=method, headers=all_headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def get(self, path: str) -> Any:
        status, _, body = self.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        status, _, answer = self.request("POST", path, body)
        assert status == 200, answer
        return json.loads(answer)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextlib.contextmanager
def review_server(*args: str, env: dict[str, str] | None = None) -> Iterator[ReviewServer]:
    command = [sys.executable, "-m", "distill", "review", *args, "--port", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    lines = []
    try:
        while True:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("distill review exited before serving:\n" + "".join(lines))
            lines.append(line)
            if "review page: " in line:
                break
        yield ReviewServer(line.split("review page: ", 1)[1].split(" ", 1)[0].strip(), process, lines)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        process.stdout.close()


def eval_dir(path: Path, items: int = 20, student: str = "distilled") -> Path:
    """An evaluation directory as `distill eval` writes it: report.json, items.jsonl, and the eval set it names.

    Item n: the teacher's answer names amount n, the student's n+1 on odd items; the judge scored the teacher
    8 and the student 8 on even items (a tie) and 5 on odd ones.
    """
    path.mkdir(parents=True, exist_ok=True)
    eval_set = path / "eval_set.jsonl"
    rows, lines = [], []
    for n in range(items):
        reference = contract_answer("北京星河科技有限公司", "上海云帆贸易有限公司", f"{n}万元")
        lines.append(
            json.dumps(
                {"id": f"e{n}", "input": f"合同e{n}:金额{n}万元。", "reference": reference},
                ensure_ascii=False,
            )
        )
        student_answer = reference if n % 2 == 0 else reference.replace(f"{n}万元", f"{n + 1}万元")
        rows.append(
            {
                "id": f"e{n}",
                "teacher_answer": reference,
                f"{student}_answer": student_answer,
                "teacher_score": 8.0,
                f"{student}_score": 8.0 if n % 2 == 0 else 5.0,
            }
        )
    eval_set.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (path / "items.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    report = {
        "items": items,
        "students": {student: {"role": "distilled"}},
        "config": {
            "eval_set": str(eval_set),
            "task": TASK,
            "id_field": "id",
            "input_field": "input",
            "reference_field": "reference",
            "roi": {"win_margin": 0.1},
        },
    }
    (path / "report.json").write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")
    return path
