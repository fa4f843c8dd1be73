"""SIGTERM after the engine has run in the same process still reaches `distill run`'s own handler.

The engine takes SIGINT and SIGTERM over while it generates; asyncio's handler removal resets a signal to the
default (for SIGTERM: kill the process on the spot), so a pipeline that generated first and then got SIGTERM
used to die without stopping its servers. A real process, a real teacher server, a real signal.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from distill.engine.config import GenerateConfig
    from distill.engine.runner import run_generation
    from distill.pipeline.run import sigterm_as_interrupt
    from distill.testing.fake_teacher import FakeTeacherSettings, start_in_thread

    work = Path(sys.argv[1])
    (work / "in.jsonl").write_text("".join(f'{{"id": "{n}", "input": "question {n}"}}\\n' for n in range(3)))
    base_url, stop = start_in_thread(FakeTeacherSettings(latency_ms=1))
    config = GenerateConfig.model_validate({
        "input": str(work / "in.jsonl"), "output_dir": str(work / "out"),
        "teacher": {"base_url": base_url + "/v1", "model": "fake", "api_key_env": None},
        "filters": {"min_output_chars": 1},
    })
    with sigterm_as_interrupt():
        summary = run_generation(config, progress=False)
        print("generated", summary["status"], flush=True)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
            print("SIGTERM was ignored", flush=True)
        except KeyboardInterrupt:
            print("stopped cleanly", flush=True)
    stop()
    """
)


def test_sigterm_after_generation_unwinds_through_the_pipelines_handler(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert "generated complete" in result.stdout, result.stdout + result.stderr
    assert "stopped cleanly" in result.stdout and result.returncode == 0, (result.returncode, result.stderr)
