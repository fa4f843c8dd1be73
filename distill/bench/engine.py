"""``distill bench engine``: the engine's targets, measured side by side in one run.

The fake teacher runs in its own process and each measured side in another (see ``distill.bench.engine_workers``),
so a side's CPU time (from ``wait4``) is its whole process and nothing else. Sections:

- throughput: 5,000 prompts, 50 ms latency, 256 in flight — CPU per request of the full ``distill generate``
  path against a bare aiohttp+orjson+uvloop floor (target ≤ 1.3×, median of 5 alternating runs), dispatcher alone for reference, and
  bespokelabs-curator when importable (target: ≥ 3× its throughput);
- rpm: a server enforcing 600 RPM — achieved rate over ~60 s and the number of 429s (target ≥ 97%, 0);
- inflight: 10,000 requests in flight against a 1 s server, without errors;
- million: peak RSS streaming a 1,000,000-line input (target < 300 MB), then kill -9 near the end and time
  how long the resumed run takes to send its first request (target < 3 s).

``--quick`` shrinks every section (figures then say what they measured); the docs hold a full run.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from distill.bench.engine_harness import Report, Sizes, cache_bytecode
from distill.bench.engine_sections import SECTION_RUNNERS

SECTIONS = tuple(SECTION_RUNNERS)


# -- report ---------------------------------------------------------------------------------------------


def render(report: Report, mode: str, elapsed_s: float) -> str:
    lines = [
        f"Mode: {mode}; {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}; run took {elapsed_s:.0f} s; "
        f"measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| target | measured | baseline (same run) | result |",
        "|---|---|---|---|",
    ]
    lines += [f"| {row.target} | {row.measured} | {row.baseline} | {row.verdict} |" for row in report.rows]
    lines += [
        "",
        "Raw figures:",
        "",
        "```json",
        orjson.dumps(report.details, option=orjson.OPT_INDENT_2).decode(),
        "```",
    ]
    return "\n".join(lines) + "\n"


def run_bench(sections: list[str], sizes: Sizes, workdir: Path, log: Callable[[str], None]) -> Report:
    report = Report()
    cache_bytecode()
    for name in sections:
        log(f"bench engine: {name} ...")
        started = time.perf_counter()
        SECTION_RUNNERS[name](report, sizes, workdir / name, log)
        log(f"bench engine: {name} done in {time.perf_counter() - started:.0f} s")
    return report


class EngineBenchConfig(BaseModel):
    """``distill bench engine``'s settings."""

    model_config = ConfigDict(extra="forbid")

    quick: bool = Field(default=False, description="smaller sizes (about 3 minutes)")
    smoke: bool = Field(default=False, description="tiny sizes, for tests: checks it runs, not the targets")
    only: list[str] | None = Field(
        default=None,
        description=f"run only this section (repeatable): {', '.join(SECTIONS)} (default: every section)",
    )
    out: Path | None = Field(default=None, description="also write the report (markdown) to this file")
    curator_python: str | None = Field(
        default=None,
        description="an interpreter that has bespokelabs-curator (e.g. a throwaway venv's bin/python), for the "
        "curator comparison (default: this one, skipped when it lacks curator)",
    )

    @field_validator("only")
    @classmethod
    def _known_sections(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(SECTIONS))
        if unknown:
            raise ValueError(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
        return value

    @model_validator(mode="after")
    def _one_size(self) -> EngineBenchConfig:
        if self.quick and self.smoke:
            raise ValueError("quick and smoke are two sizes: choose one")
        return self


def bench_engine(config: EngineBenchConfig) -> int:
    """Run the chosen sections, print the report (and write it to ``config.out``); 1 if a target was missed."""
    sizes = Sizes.smoke() if config.smoke else Sizes.quick() if config.quick else Sizes()
    sizes.curator_python = config.curator_python
    mode = "smoke" if config.smoke else "quick" if config.quick else "full"
    sections = config.only or list(SECTIONS)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="distill-bench-") as tmp:
        report = run_bench(sections, sizes, Path(tmp), lambda text: print(text, file=sys.stderr, flush=True))
    text = render(report, mode, time.perf_counter() - started)
    print(text)
    if config.out:
        config.out.write_text(text, encoding="utf-8")
    return 0 if all(row.passed is not False for row in report.rows) else 1
