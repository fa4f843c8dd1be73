"""distill's serving figures against vLLM's own serving benchmark (`vllm bench serve`), on the same running server.

For each concurrency level, vLLM's benchmark and distill's measurement take turns in short slices on the same
student server (each tool's requests pooled), so a server that warms up or slows down during the check biases
neither tool; with the same prompts (vLLM's ``custom`` dataset: the same instruction texts, sent as chat
messages without a client-side template), the same number of requests, greedy sampling and exactly ``max_tokens`` output tokens on
both sides (``ignore_eos``), so the two tools measure the same work. vLLM's benchmark is run through its module
(``vllm.benchmarks.serve``; the ``vllm`` console script of the CPU build does not start). The medians of TTFT
and TPOT must agree within 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

from distill.endpoint import Endpoint
from distill.engine.types import ChatRequest
from distill.evaluator.latency import LoadPoint, LoadProfile, measure_point, measuring_session, warm_up
from distill.evaluator.load_metrics import LatencyTargets, PointResult, summarise_point

AGREEMENT = 0.10  # relative difference of the medians allowed
METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")


def vllm_bench_args(
    endpoint: Endpoint,
    tokenizer: Path,
    dataset: Path,
    *,
    requests: int,
    concurrency: int,
    max_tokens: int,
    warmup: int,
) -> list[str]:
    """`vllm bench serve` arguments for one concurrency point on ``endpoint``."""
    server = endpoint.base_url.removesuffix("/v1")
    return [
        "--backend",
        "openai-chat",
        "--base-url",
        server,
        "--endpoint",
        "/v1/chat/completions",
        "--model",
        endpoint.model,
        "--tokenizer",
        str(tokenizer),
        "--dataset-name",
        "custom",
        "--dataset-path",
        str(dataset),
        "--skip-chat-template",
        "--disable-shuffle",
        "--custom-output-len",
        str(max_tokens),
        "--ignore-eos",
        "--temperature",
        "0",
        "--num-prompts",
        str(requests),
        "--max-concurrency",
        str(concurrency),
        "--request-rate",
        "inf",
        "--num-warmups",
        str(warmup),
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,99",
        "--disable-tqdm",
        "--save-detailed",  # per-request values in the returned dict (nothing is written without --save-result)
    ]


def run_vllm_bench(args: list[str]) -> dict[str, Any]:
    """vLLM's serving benchmark in this process; its result dict (median_ttft_ms, median_tpot_ms, ...)."""
    from vllm.benchmarks import serve as vllm_serve_bench

    parser = argparse.ArgumentParser(prog="vllm bench serve")
    vllm_serve_bench.add_cli_args(parser)
    return vllm_serve_bench.main(parser.parse_args(args))


def _distill_requests(endpoint, requests, concurrency, first, count, warmup) -> PointResult:
    """distill's measurement of requests ``first`` to ``first + count - 1`` of a point (the prompts in turn)."""
    shift = first % len(requests)
    rotated = [*requests[shift:], *requests[:shift]]

    async def run():
        async with measuring_session(endpoint, concurrency) as session:
            await warm_up(session, rotated, warmup)
            return await measure_point(
                session,
                rotated,
                LoadPoint(kind="concurrency", value=concurrency),
                count=count,
                tag=f"agreement-{first}",
            )

    return asyncio.run(run())


def vllm_shaped(request: ChatRequest) -> ChatRequest:
    """``request`` worded as `vllm bench serve`'s openai-chat backend words it: each message's text as a list of
    one text part. The server parses that form on a slower path than a plain string (about 25 ms more to the first
    token on this CPU), so both tools must send the same form for their TTFTs to be comparable."""
    messages = [
        {**message, "content": [{"type": "text", "text": message["content"]}]} for message in request.messages
    ]
    return dataclasses.replace(request, messages=messages)


VLLM_RUNS = 8  # vLLM's runs per point, each between two parts of distill's measurement


def spread(waves: int, parts: int) -> list[int]:
    """``waves`` dealt into ``parts`` slices as evenly as possible, the larger slices first."""
    base, extra = divmod(waves, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def interleaving(count: int, concurrency: int) -> tuple[list[int], list[int]]:
    """How ``count`` requests per tool alternate: distill's parts and vLLM's runs as D V D V ... V D.

    A server's speed drifts (by 10% within a minute on a shared machine): two long blocks, one per tool,
    can land on different speeds, while many short alternating slices see the same mix. Each slice is whole
    waves of ``concurrency`` (a partial wave would run below the load asked for); the requests past the last whole
    wave join each tool's last slice.
    """
    waves = count // concurrency
    runs = max(1, min(VLLM_RUNS, waves - 1))  # one more distill part than vLLM runs, each at least a wave

    def slices(parts: int) -> list[int]:
        sizes = [wave * concurrency for wave in spread(waves, parts)]
        last = max((index for index, size in enumerate(sizes) if size), default=0)
        sizes[last] += count - waves * concurrency
        return sizes

    return slices(runs + 1), slices(runs)


def pooled_vllm(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """vLLM's per-request timings from several runs of its benchmark, summarised as vLLM summarises one run
    (``median_ttft_ms``, ``median_tpot_ms``, ``median_itl_ms``, ``median_e2el_ms``; TPOT per request =
    (E2EL − TTFT) / (output tokens − 1), ITL over every gap), with ``completed`` and ``request_throughput``."""
    ttfts, tpots, itls, e2els, lengths = [], [], [], [], []
    for run in runs:
        for ttft, latency, tokens, gaps, error in zip(
            run["ttfts"], run["latencies"], run["output_lens"], run["itls"], run["errors"], strict=True
        ):
            if error:
                continue
            ttfts.append(ttft)
            e2els.append(latency)
            lengths.append(tokens)
            itls.extend(gaps)
            if tokens > 1:
                tpots.append((latency - ttft) / (tokens - 1))
    duration = sum(run["duration"] for run in runs)

    def median_ms(values: list[float]) -> float | None:
        return statistics.median(values) * 1000.0 if values else None

    return {
        "median_ttft_ms": median_ms(ttfts),
        "median_tpot_ms": median_ms(tpots),
        "median_itl_ms": median_ms(itls),
        "median_e2el_ms": median_ms(e2els),
        "completed": len(ttfts),
        "request_throughput": len(ttfts) / duration if duration else None,
        "ttfts": ttfts,
        "latencies": e2els,
        "output_lens": lengths,
    }


def compare_with_vllm(
    student: Endpoint,
    tokenizer: Path,
    prompts: list[tuple[str, str]],
    requests: list[ChatRequest],
    load: LoadProfile,
    max_tokens: int,
    work: Path,
    say,
) -> dict[str, Any]:
    """Each concurrency level measured by vLLM's benchmark and by distill in alternating slices (see
    :func:`interleaving`), each tool's requests pooled, so a server that speeds up or slows down during the check
    biases neither tool.

    ``requests`` are ``prompts`` as distill sends them to the student (greedy, exactly ``max_tokens`` tokens), sent
    here in vLLM's wording (``vllm_shaped``) so the two tools send the same bytes; both tools go through the
    prompts in the same order. ``tokenizer`` is the student's model directory; the benchmark's files go under
    ``work``.
    """
    requests = [vllm_shaped(request) for request in requests]
    work.mkdir(parents=True, exist_ok=True)
    points = []
    for concurrency in load.concurrency:
        count = load.requests_at(LoadPoint(kind="concurrency", value=concurrency)) or 32
        started = time.perf_counter()
        ours_parts, their_runs = interleaving(count, concurrency)
        measured, runs = PointResult(), []
        ours_sent = theirs_sent = 0
        for index, part in enumerate(ours_parts):
            if part:
                warmup = load.warmup if ours_sent == 0 else 0  # the server is warm after the first part
                result = _distill_requests(student, requests, concurrency, ours_sent, part, warmup)
                measured.timings += result.timings
                measured.wall_s += result.wall_s
                ours_sent += part
            if index < len(their_runs):
                size = their_runs[index]
                dataset = work / f"prompts-c{concurrency}-{index}.jsonl"
                # vLLM's custom dataset takes its first rows: each run gets the prompts that come next in the cycle.
                rows = (prompts[(theirs_sent + row) % len(prompts)][1] for row in range(size))
                dataset.write_text(
                    "".join(json.dumps({"prompt": text}, ensure_ascii=False) + "\n" for text in rows), "utf-8"
                )
                runs.append(
                    run_vllm_bench(
                        vllm_bench_args(
                            student,
                            tokenizer,
                            dataset,
                            requests=size,
                            concurrency=concurrency,
                            max_tokens=max_tokens,
                            warmup=load.warmup if index == 0 else 0,
                        )
                    )
                )
                theirs_sent += size
        ours, theirs = summarise_point(measured, LatencyTargets()), pooled_vllm(runs)
        point = {
            "concurrency": concurrency,
            "requests": count,
            "slices": {"distill": ours_parts, "vllm": their_runs},
            "vllm_runs": [
                {key: run.get(key) for key in ("completed", "median_ttft_ms", "median_tpot_ms", "duration")}
                for run in runs
            ],
            "distill": {},
            "vllm": {},
            "difference": {},
        }
        for metric in METRICS:
            mine, reference = ours[metric]["p50"], theirs[f"median_{metric}"]
            point["distill"][metric], point["vllm"][metric] = mine, reference
            point["difference"][metric] = (mine - reference) / reference if mine and reference else None
        point["distill"]["request_throughput"] = ours["request_throughput"]
        point["vllm"]["request_throughput"] = theirs["request_throughput"]
        point["distill"]["completed"], point["vllm"]["completed"] = ours["completed"], theirs["completed"]
        point["samples"] = _samples(measured, theirs)
        point["agrees"] = all(
            point["difference"][m] is not None and abs(point["difference"][m]) <= AGREEMENT
            for m in ("ttft_ms", "tpot_ms")
        )
        points.append(point)
        say(
            f"agreement at concurrency {concurrency}: TTFT p50 {_ms(ours['ttft_ms']['p50'])} vs vLLM "
            f"{_ms(theirs['median_ttft_ms'])} ms, TPOT p50 {_ms(ours['tpot_ms']['p50'])} vs "
            f"{_ms(theirs['median_tpot_ms'])} ms, {len(their_runs)} alternating runs each "
            f"({time.perf_counter() - started:.0f} s)"
        )
    return {
        "tolerance": AGREEMENT,
        "max_tokens": max_tokens,
        "points": points,
        "all_agree": all(p["agrees"] for p in points),
    }


def _samples(ours: PointResult, theirs: dict[str, Any]) -> dict[str, Any]:
    """Per-request TTFT, E2EL (ms) and output tokens of the completed requests of both tools (``theirs``: from
    :func:`pooled_vllm`), in the JSON for whoever checks a difference."""
    done = [t for t in ours.timings if t.ok]
    return {
        "distill": {
            "ttft_ms": [t.ttft_ms for t in done],
            "e2el_ms": [t.e2el_ms for t in done],
            "output_tokens": [t.output_tokens for t in done],
        },
        "vllm": {
            "ttft_ms": [value * 1000.0 for value in theirs["ttfts"]],
            "e2el_ms": [value * 1000.0 for value in theirs["latencies"]],
            "output_tokens": theirs["output_lens"],
        },
    }


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


def comparison_table(comparison: dict[str, Any]) -> str:
    lines = [
        "| concurrency | requests | TTFT p50 distill / vLLM ms | Δ | TPOT p50 distill / vLLM ms | Δ | "
        "ITL p50 distill / vLLM ms | E2EL p50 distill / vLLM ms | req/s distill / vLLM | within 10% |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in comparison["points"]:
        ours, theirs, diff = p["distill"], p["vllm"], p["difference"]
        lines.append(
            f"| {p['concurrency']} | {p['requests']} | {_ms(ours['ttft_ms'])} / {_ms(theirs['ttft_ms'])} | "
            f"{_pct(diff['ttft_ms'])} | {_ms(ours['tpot_ms'])} / {_ms(theirs['tpot_ms'])} | {_pct(diff['tpot_ms'])} | "
            f"{_ms(ours['itl_ms'])} / {_ms(theirs['itl_ms'])} | {_ms(ours['e2el_ms'])} / {_ms(theirs['e2el_ms'])} | "
            f"{ours['request_throughput']:.2f} / {theirs['request_throughput'] or 0:.2f} | "
            f"{'yes' if p['agrees'] else 'no'} |"
        )
    return "\n".join(lines)
