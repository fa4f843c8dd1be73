"""`distill bench serve --compare-vllm` on a real `vllm serve` of SmolLM2 (this machine's CPU): at one request in
flight, distill's TTFT and TPOT medians agree with vLLM's own serving benchmark within 10%, on the same server,
prompts and load.

The student is started by the bench itself (the evaluator's `vllm serve` launch) and swept by distill; then
`vllm bench serve` and distill take turns in short slices (eight vLLM runs between nine parts of distill's
measurement), so drift in the server's speed during the check cancels instead of landing on one tool: with one
block per tool, a shared machine's drift alone put the two TPOT medians 12% apart. The prompts are one template
with different numbers, so every request has the same prompt length and (ignore_eos) the same output length: a
median over prompts of two very different lengths falls in the gap between them and swings with noise. Only
relative differences are asserted, so the test holds on a faster or a slower machine. The server runs on one core
(`cpu_threads: 1`) so that the load generators have the other core to themselves. One request in flight is where
two load generators must measure the same thing; above it they release requests with different timing (see
docs/evaluator.md), so higher loads are tabled, not asserted.
"""

from __future__ import annotations

import json

import pytest

from distill.bench.serve import ServeBenchConfig, run_bench

pytestmark = pytest.mark.slow


def _same_length_prompts(count: int) -> list[str]:
    return [
        f"Write a short, polite reply to customer #{10 + i} asking for a refund of {20 + 7 * i} dollars."
        for i in range(count)
    ]


def test_distill_agrees_with_vllm_bench_serve(tmp_path):
    eval_set = tmp_path / "eval.jsonl"
    eval_set.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "input": text, "reference": "-"}, ensure_ascii=False) + "\n"
            for i, text in enumerate(_same_length_prompts(8))
        ),
        encoding="utf-8",
    )
    config = ServeBenchConfig.model_validate(
        {
            "eval_set": str(eval_set),
            "max_tokens": 24,
            "student": {"ignore_eos": True},
            "serving": {"max_model_len": 512, "kv_cache_mib": 256, "cpu_threads": 1},
            "load": {"concurrency": [1], "requests": 24, "warmup": 2},
            "compare_vllm": True,
            "output_dir": str(tmp_path / "out"),
        }
    )
    report = run_bench(config, say=print)
    comparison = report["vllm_comparison"]
    for point in comparison["points"]:
        assert point["distill"]["completed"] == point["vllm"]["completed"] == 24
        for metric in ("ttft_ms", "tpot_ms"):
            assert abs(point["difference"][metric]) <= 0.10, (point["concurrency"], metric, point)
    # ignore_eos: every answer is exactly max_tokens long, so both tools timed the same work.
    assert all(p["output_tokens_mean"] == 24 for p in report["sides"][0]["points"])
    assert "Agreement with vLLM's serving benchmark" in (tmp_path / "out" / "serve-bench.md").read_text(
        "utf-8"
    )
