"""`distill bench train` end to end on a tiny random model: every side reports real tokens per second."""

from __future__ import annotations

from distill.bench.train import run_bench, summarise


def test_bench_smoke_reports_every_side(tmp_path):
    settings = {
        "device": "cpu",
        "model": None,
        "model_shape": "tiny",
        "random_weights": True,
        "dtype": "fp32",
        "batch_size": 4,
        "grad_accum": 1,
        "steps": 3,
        "warmup_steps": 1,
        "min_len": 16,
        "max_len": 96,
        "token_budget": 384,
        "threads": 1,
        "seed": 0,
    }
    lines = []
    sides = ["hf", "distill", "distill-padded", "distill-blas"]
    report = run_bench(settings, sides, 1, tmp_path, echo=lines.append)
    assert len(lines) == 4
    assert all("error" not in result for result in report["results"]), report["results"]
    for result in report["results"]:
        assert result["steps_timed"] == 2 and result["real_tokens"] > 0 and result["real_tok_per_s"] > 0
        assert result["peak_rss_mib"] > 0 and result["kib_per_token"] > 0
        assert 0 < result["forward_tokens"] <= (384 if result["side"] == "distill" else 4 * 96)
    hf = next(r for r in report["results"] if r["side"] == "hf")
    assert 0 < hf["pad_fraction"] < 1 and hf["padded_tokens"] > hf["real_tokens"]
    blas = next(r for r in report["results"] if r["side"] == "distill-blas")
    assert blas["cpu_matmul"] == "blas"
    assert set(report["summary"]) == set(sides)
    assert report["summary"]["hf"]["vs_hf"] == 1.0
    assert report["summary"]["distill"]["kib_per_token"] > 0


def test_summary_sums_rounds_before_dividing():
    results = [
        {"side": "hf", "real_tokens": 100, "seconds": 1.0},
        {"side": "hf", "real_tokens": 100, "seconds": 3.0},
        {"side": "distill", "real_tokens": 200, "seconds": 2.0},
        {"side": "distill", "error": "boom"},
    ]
    summary = summarise(results)
    assert summary["hf"]["real_tok_per_s"] == 50.0 and summary["distill"]["real_tok_per_s"] == 100.0
    assert summary["distill"]["vs_hf"] == 2.0
