"""The sides of ``distill bench engine``, each run in its own process so its CPU time is its own.

``python -m distill.bench.engine_workers SIDE ARGS_JSON`` runs one side and prints one JSON line with what it
saw from the inside (wall time, CPU of the hot part, errors); the parent measures the whole process's CPU and
peak RSS from ``wait4``. Sides:

- ``floor``: the bare minimum — aiohttp + orjson + uvloop, a semaphore, send, parse, append. No admission,
  no retries, no records. The engine is measured against it.
- ``floor_collector``: the same loop with the garbage-collector settings a run uses
  (``distill.engine.collector``), for reference: how much of the distance to the floor those settings close.
- ``dispatch``: an engine session (client + admission + retries + dispatcher), results appended to a list.
- ``generate``: the whole ``distill generate`` path (``distill.engine.runner.run_generation``): validation,
  resume ledger, prompts, parsing, filters, exactly-once shards.
- ``curator``: bespokelabs-curator on the same prompts, when it is importable.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from distill.engine.collector import fewer_collections


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_prompts(input_path: str, template_spec: str, task: str, limit: int | None = None) -> list[str]:
    """The teacher prompts the engine would send for the input file (same template, same task)."""
    from distill.engine.prompts import load_template, render_prompt

    template = load_template(template_spec)
    prompts = []
    with open(input_path, "rb") as handle:
        for line in handle:
            if limit is not None and len(prompts) >= limit:
                break
            prompts.append(render_prompt(template, task, orjson.loads(line)["input"]))
    return prompts


def _use_uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def floor(args: dict[str, Any], collector_settings: bool = False) -> dict[str, Any]:
    import aiohttp

    _use_uvloop()
    prompts = read_prompts(args["input"], args["template"], args["task"])
    url = args["base_url"].rstrip("/") + "/v1/chat/completions"
    concurrency = args["concurrency"]
    answers: list[str] = []
    errors = 0

    async def main() -> None:
        nonlocal errors
        semaphore = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(prompt: str) -> None:
                nonlocal errors
                body = {
                    "model": args["model"],
                    "messages": [{"role": "user", "content": prompt}],
                    "temperature": 0.3,
                    "max_tokens": args["max_tokens"],
                }
                async with semaphore:
                    try:
                        async with session.post(
                            url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
                        ) as response:
                            data = orjson.loads(await response.read())
                        answers.append(data["choices"][0]["message"]["content"])
                    except Exception:  # the floor counts failures, it does not handle them
                        errors += 1

            await asyncio.gather(*(one(prompt) for prompt in prompts))

    with fewer_collections() if collector_settings else contextlib.nullcontext():
        return _timed(lambda: asyncio.run(main()), ok=lambda: len(answers), errors=lambda: errors)


def floor_collector(args: dict[str, Any]) -> dict[str, Any]:
    return floor(args, collector_settings=True)


def dispatch_only(args: dict[str, Any]) -> dict[str, Any]:
    from distill.endpoint import Endpoint
    from distill.engine.session import open_session
    from distill.engine.types import ChatRequest, Job

    _use_uvloop()
    prompts = read_prompts(args["input"], args["template"], args["task"])
    results: list[Any] = []
    outcome: dict[str, Any] = {}

    def jobs():
        for index, prompt in enumerate(prompts):
            request = ChatRequest(
                [{"role": "user", "content": prompt}], args["model"], 0.3, args["max_tokens"], f"{index}#0"
            )
            yield Job(index, request, args["max_tokens"] + len(prompt))

    endpoint = Endpoint(
        base_url=args["base_url"],
        model=args["model"],
        api_key_env=None,
        concurrency=args["concurrency"],
        rpm=args.get("rpm"),
        tpm=args.get("tpm"),
    )

    async def main() -> None:
        async with open_session(endpoint) as session:
            done = await session.run(jobs(), lambda job, r: results.append(r))
        outcome.update(done.as_dict())

    report = _timed(lambda: asyncio.run(main()), ok=lambda: outcome.get("succeeded", 0))
    report["dispatch"] = outcome
    return report


def generate(args: dict[str, Any]) -> dict[str, Any]:
    from distill.engine.config import load_generate_config
    from distill.engine.runner import run_generation

    config = load_generate_config(args["config"], None)
    summary: dict[str, Any] = {}
    report = _timed(  # progress on, as on the command line (not a terminal here: a log line now and then)
        lambda: summary.update(run_generation(config, progress=True)),
        ok=lambda: summary.get("session", {}).get("records", 0),
        errors=lambda: sum((summary.get("errors_by_class") or {}).values()),
    )
    report["summary"] = {
        k: summary.get(k) for k in ("status", "total", "done", "records", "dispatch", "errors_by_class")
    }
    return report


def curator(args: dict[str, Any]) -> dict[str, Any]:
    """bespokelabs-curator's OpenAI backend on the same prompts (run with an interpreter that has it)."""
    import os
    import tempfile

    os.environ.update(
        TELEMETRY_ENABLED="false",
        CURATOR_DISABLE_CACHE="1",
        CURATOR_CACHE_DIR=tempfile.mkdtemp(prefix="curator-"),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        OPENAI_API_KEY=os.environ.get("OPENAI_API_KEY", "not-needed-for-a-local-server"),
    )
    _offline_tiktoken()
    from bespokelabs import curator as bespoke  # type: ignore[import-not-found]

    prompts = read_prompts(args["input"], args["template"], args["task"])
    llm = bespoke.LLM(
        model_name="gpt-4o-mini",  # a name litellm knows; the local server answers whatever is asked
        backend="openai",
        backend_params={
            "base_url": args["base_url"].rstrip("/") + "/v1",
            "max_concurrent_requests": args["concurrency"],
            "max_requests_per_minute": 10_000_000,
            "max_tokens_per_minute": 10_000_000_000,
            "max_retries": 1,
        },
        generation_params={"temperature": 0.3, "max_tokens": args["max_tokens"]},
    )
    rows: list[Any] = []
    report = _timed(lambda: rows.append(llm(prompts)), ok=lambda: len(rows[0].dataset) if rows else 0)
    return report


def _offline_tiktoken() -> None:
    """curator counts tokens with tiktoken's cl100k_base, which it downloads; offline, count chars / 4."""
    import tiktoken

    try:
        tiktoken.get_encoding("cl100k_base")
        return
    except Exception:  # no network: any failure to fetch the encoding file
        pass

    class _ApproximateEncoding:
        name = "approximate-cl100k"

        def encode(self, text: str, **_: Any) -> list[int]:
            return [0] * (len(text) // 4 + 1)

    tiktoken.get_encoding = lambda name: _ApproximateEncoding()  # type: ignore[assignment]
    tiktoken.encoding_for_model = lambda name: _ApproximateEncoding()  # type: ignore[assignment]


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """VmHWM: the process's own peak RSS. (wait4's ru_maxrss starts at the parent's RSS at fork time.)"""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None


def _timed(
    work: Callable[[], Any], *, ok: Callable[[], int], errors: Callable[[], int] = lambda: 0
) -> dict[str, Any]:
    cpu, wall = _cpu_s(), time.perf_counter()
    work()
    wall_s, cpu_s = time.perf_counter() - wall, _cpu_s() - cpu
    return {
        "wall_s": round(wall_s, 3),
        "work_cpu_s": round(cpu_s, 3),
        "ok": ok(),
        "errors": errors(),
        "peak_rss_mb": peak_rss_mb(),
    }


SIDES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "floor": floor,
    "floor_collector": floor_collector,
    "dispatch": dispatch_only,
    "generate": generate,
    "curator": curator,
}


def main(argv: list[str]) -> int:
    side, args = argv[0], orjson.loads(argv[1])
    from distill.engine.client import ensure_open_files

    ensure_open_files(args.get("concurrency", 1024) + 1024)
    print(orjson.dumps(SIDES[side](args)).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
