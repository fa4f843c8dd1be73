"""The engine's data path, measured: what `distill generate` spends per record beside the network.

    distill bench engine-data                 # 1,000,000 rows (~2 GB of temporary files, a few minutes)
    distill bench engine-data --rows 100000

Figures (printed as a markdown table; docs/engine.md holds a full run):
- validate: the pass over every input line before any request (rows/s, peak RSS of that pass);
- jobs: CPU per job produced (parse a row, render the prompt, build the request);
- on_result: CPU per record written (parse, filters, record JSON, shard write, ledger write), with the
  same loop minus filters as its baseline;
- resume: a run directory holding N finished records and N + 1,000 input rows; seconds from calling
  `run_generation` to the first request reaching the (fake) teacher (the watermark lets it seek past the
  finished rows), and the worst case: a forced change discards the watermark, and every row is re-read and
  checked against the ledger (timed as the whole run, since by then nothing is left to send).
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from pathlib import Path

import orjson
from pydantic import BaseModel, ConfigDict, Field

from distill.endpoint import Endpoint
from distill.engine.config import FilterConfig, GenerateConfig
from distill.engine.cost import CostMeter
from distill.engine.filters import QualityFilter
from distill.engine.inputs import validate_inputs
from distill.engine.jobs import make_jobs
from distill.engine.ledger import ENTRY, LEDGER_NAME, Ledger, row_hash
from distill.engine.prompts import build_instruction, load_template, render_prompt
from distill.engine.records import record_key
from distill.engine.resume import ResumePosition
from distill.engine.runner import prepare_run, run_generation
from distill.engine.shards import ShardSet
from distill.engine.types import ChatRequest, ChatResponse, Job, Usage
from distill.engine.writer import RecordWriter, RunStats
from distill.testing.fake_teacher import FakeTeacherSettings, start_in_thread
from distill.testing.fake_teacher_answers import cot_answer

TASK = "抽取合同要素"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_inputs(path: Path, rows: int) -> None:
    with path.open("wb") as handle:
        for i in range(rows):
            text = f"合同编号{i}:甲方北京某科技有限公司与乙方上海某贸易有限公司签订采购合同,金额{i * 100}元,日期2024-01-01。"
            handle.write(orjson.dumps({"id": f"r{i}", "input": text}) + b"\n")


def bench_validate(path: Path) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    info = validate_inputs(path)
    wall = time.perf_counter() - started
    return {
        "rows": info.rows,
        "wall_s": round(wall, 2),
        "rows_per_s": round(info.rows / wall),
        "cpu_us_per_row": round((time.process_time() - cpu) / info.rows * 1e6, 2),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def bench_jobs(path: Path, count: int) -> dict:
    config = GenerateConfig(
        input=path,
        output_dir=path.parent / "unused",
        teacher=Endpoint(base_url="http://127.0.0.1:1", model="m"),
        task=TASK,
    )
    scratch = path.parent / "jobs_ledger"
    scratch.mkdir(exist_ok=True)
    jobs = make_jobs(config, load_template("zh"), done=set(), position=ResumePosition(Ledger(scratch)))
    cpu = time.process_time()
    produced = sum(1 for _ in zip(range(count), jobs, strict=False))
    return {"jobs": produced, "cpu_us_per_job": round((time.process_time() - cpu) / produced * 1e6, 2)}


def _writer(run_dir: Path, quality: QualityFilter, total: int) -> RecordWriter:
    ledger = Ledger(run_dir)
    position = ResumePosition(ledger)
    for i in range(total):
        position.issue(f"r{i}", i, i + 1, 1)
    return RecordWriter(
        shards=ShardSet(run_dir, 1 << 30),
        ledger=ledger,
        quality=quality,
        cost=CostMeter(None),
        stats=RunStats(total, 0),
        position=position,
        source_model="m",
        reject_truncated=True,
        stop=asyncio.Event(),
    )


def bench_on_result(workdir: Path, count: int) -> dict:
    template = load_template("zh")
    pairs = []
    for i in range(count):
        text = f"合同编号{i}:甲方北京某科技有限公司与乙方上海某贸易有限公司签订采购合同,金额{i * 100}元。"
        prompt = render_prompt(template, TASK, text)
        request = ChatRequest([{"role": "user", "content": prompt}], "m", 0.3, 1024, f"r{i}#0")
        job = Job((f"r{i}", 0), request, 100, {"instruction": build_instruction(TASK, text)})
        pairs.append(
            (job, ChatResponse(cot_answer(prompt, f"r{i}#0", 0.3), "stop", Usage(120, 150), 50.0, "m"))
        )

    class NoFilter(QualityFilter):
        def judge(self, instruction: str, answer: str, row: int = 0) -> tuple[None, None]:
            return None, None

    figures = {}
    for name, quality in (("no_filters", NoFilter(FilterConfig())), ("full", QualityFilter(FilterConfig()))):
        run_dir = workdir / f"on_result_{name}"
        run_dir.mkdir()
        writer = _writer(run_dir, quality, count)
        cpu = time.process_time()
        for job, response in pairs:
            writer(job, response)
        figures[name] = round((time.process_time() - cpu) / count * 1e6, 2)
        writer.shards.close()
        writer.ledger.close()
    return {
        "records": count,
        "cpu_us_per_record": figures["full"],
        "baseline_without_filters_us": figures["no_filters"],
    }


def _fill_run(config: GenerateConfig, finished: int) -> None:
    """A run directory as a run that finished the first ``finished`` rows leaves it: shards, ledger, watermark."""
    prepare_run(config).close()  # validates the input and writes run.json
    record = {
        "id": "",
        "sample_index": 0,
        "instruction": "x" * 200,
        "thinking": "y" * 300,
        "output": "z" * 200,
        "full_output": "",
        "source_model": "m",
        "generated_at": "2026-01-01T00:00:00.000Z",
        "temperature": 0.3,
        "usage": {"prompt_tokens": 120, "completion_tokens": 150},
        "latency_ms": 50.0,
        "finish_reason": "stop",
    }
    offset = 0
    with (
        (config.output_dir / "accepted-00000.jsonl").open("wb") as shard,
        (config.output_dir / LEDGER_NAME).open("wb") as ledger,
        config.input.open("rb") as rows,
    ):
        for i in range(finished):
            offset += len(rows.readline())
            record["id"] = f"r{i}"
            shard.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            ledger.write(
                ENTRY.pack(record_key(f"r{i}", 0), (i + 1) * 7919, 120, 150, ord("A"), 0, row_hash(f"r{i}"))
            )
        ledger.write(ENTRY.pack(offset, 0, finished + 1, 0, ord("@"), 0, 0))


def bench_resume(workdir: Path, finished: int) -> dict:
    inputs = workdir / "resume_in.jsonl"
    write_inputs(inputs, finished + 1000)
    first_call: list[float] = []

    def responder(body: dict) -> str:
        if not first_call:
            first_call.append(time.perf_counter())
        return cot_answer(body["messages"][0]["content"], "x", 0.3)

    url, stop = start_in_thread(FakeTeacherSettings(latency_ms=1), responder)
    try:
        config = GenerateConfig(
            input=inputs,
            output_dir=workdir / "resume_run",
            teacher=Endpoint(base_url=url + "/v1", model="fake-teacher", api_key_env=None, concurrency=64),
            task=TASK,
        )
        _fill_run(config, finished)
        figures = {"finished_records": finished}
        started = time.perf_counter()
        summary = run_generation(config, progress=False)
        figures["with_watermark"] = {
            "first_request_s": round(first_call[0] - started, 2),
            "status": summary["status"],
            "sent": summary["session"]["records"],
        }
        # Worst case: a forced settings change discards the watermark, so every row is re-read and its keys
        # looked up in the ledger. Everything is finished by now, so this times the whole re-check.
        started = time.perf_counter()
        summary = run_generation(config.model_copy(update={"max_tokens": 1000}), force=True, progress=False)
        figures["forced_rescan"] = {
            "recheck_all_s": round(time.perf_counter() - started, 2),
            "status": summary["status"],
            "sent": summary["session"]["records"],
        }
        figures["peak_rss_mb"] = round(peak_rss_mb())
        return figures
    finally:
        stop()


class EngineDataBenchConfig(BaseModel):
    """``distill bench engine-data``'s settings."""

    model_config = ConfigDict(extra="forbid")

    rows: int = Field(default=1_000_000, ge=1, description="input rows (1,000,000: ~2 GB of temporary files)")
    workdir: Path | None = Field(
        default=None, description="where the temporary files go (default: a fresh temp dir)"
    )


def bench_engine_data(args: EngineDataBenchConfig) -> int:
    """Every part, printed as a markdown table and the raw figures."""
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        inputs = workdir / "in.jsonl"
        write_inputs(inputs, args.rows)
        results = {
            "validate": bench_validate(inputs),
            "jobs": bench_jobs(inputs, min(args.rows, 100_000)),
            "on_result": bench_on_result(workdir, min(args.rows, 20_000)),
        }
        inputs.unlink()
        results["resume"] = bench_resume(workdir, args.rows)
    rows = [
        (
            "validation pass",
            f"{results['validate']['rows_per_s']:,} rows/s ({results['validate']['wall_s']} s "
            f"for {results['validate']['rows']:,}), peak RSS {results['validate']['peak_rss_mb']} MB",
        ),
        ("job production", f"{results['jobs']['cpu_us_per_job']} µs CPU per job"),
        (
            "on_result (record + ledger)",
            f"{results['on_result']['cpu_us_per_record']} µs CPU per record; without "
            f"filters {results['on_result']['baseline_without_filters_us']} µs",
        ),
        (
            "resume, first request",
            f"{results['resume']['with_watermark']['first_request_s']} s with "
            f"{results['resume']['finished_records']:,} finished records; "
            f"{results['resume']['forced_rescan']['recheck_all_s']} s to re-check every row when a forced change "
            "discards the watermark",
        ),
    ]
    print("| measured | figure |\n|---|---|")
    for name, figure in rows:
        print(f"| {name} | {figure} |")
    print("\n```json\n" + orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n```")
    return 0
