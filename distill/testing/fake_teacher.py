"""``distill serve-fake-teacher``: a local OpenAI-compatible server for tests and benchmarks. Not a teacher.

It answers ``POST /v1/chat/completions`` (plain and streamed, with ``usage``) with deterministic
chain-of-thought text, after a configurable latency, under server-side RPM/TPM limits that answer 429 with
OpenAI's ``x-ratelimit-*`` and ``retry-after`` headers, with injectable faults (500/503, connection reset,
truncated body, slow answers). It counts every request and every request id (``X-Client-Request-Id``) it
saw, so a test can prove what was sent twice: ``GET /stats``, ``POST /stats/reset``. ``GET /v1/models``
lists its one model.

In-process: ``start_in_thread(settings) -> (base_url, stop)``. As a process: ``distill serve-fake-teacher
--port 0`` prints ``listening on http://127.0.0.1:PORT`` as its first line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from distill.engine.client import ensure_open_files
from distill.testing.fake_teacher_answers import Responder
from distill.testing.fake_teacher_server import FakeTeacherSettings, build_app

__all__ = [
    "DESCRIPTION",
    "FakeTeacherSettings",
    "build_app",
    "serve",
    "start_in_thread",
    "start_server",
]

DESCRIPTION = (
    "A local OpenAI-compatible TEST AND BENCHMARK server with injectable latency, rate limits and faults. "
    "It is not a teacher: its answers are canned text."
)


async def start_server(
    settings: FakeTeacherSettings, responder: Responder | None = None
) -> tuple[web.AppRunner, str]:
    """Start listening in the running loop; returns the runner (``await runner.cleanup()``) and base URL."""
    return await start_app(build_app(settings, responder), settings.host, settings.port)


async def start_app(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on ``host:port`` (0: a free port) in the running loop: ``(runner, base_url)``."""
    # A stopping test server should not wait a minute for a deliberately hanging request.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=16384, reuse_address=True)
    await site.start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"


def start_in_thread(
    settings: FakeTeacherSettings | None = None, responder: Responder | None = None
) -> tuple[str, Callable[[], None]]:
    """Run the server on its own event loop in a daemon thread: ``(base_url, stop)``."""
    settings = settings or FakeTeacherSettings()
    return serve_in_thread(
        lambda: build_app(settings, responder), "fake-teacher", settings.host, settings.port
    )


def serve_in_thread(
    build: Callable[[], web.Application], name: str, host: str = "127.0.0.1", port: int = 0
) -> tuple[str, Callable[[], None]]:
    """Serve the application ``build()`` makes on its own event loop in a daemon thread: ``(base_url, stop)``."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        state["loop"] = loop
        try:
            runner, state["url"] = loop.run_until_complete(start_app(build(), host, port))
        except BaseException as exc:  # report a bind failure to the caller instead of hanging it
            state["error"] = exc
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError(f"{name} did not start within 30 s")
    if "error" in state:
        raise state["error"]

    def stop() -> None:
        loop = state["loop"]
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(30)

    return state["url"], stop


# -- as a process ---------------------------------------------------------------------------------------


def serve(settings: FakeTeacherSettings) -> None:
    """``distill serve-fake-teacher``: serve until SIGINT or SIGTERM; the first line printed is its URL."""
    ensure_open_files(65536)  # one descriptor per client connection: benchmarks hold 10,000 at once
    run_on_uvloop(_serve_forever(settings))


def run_on_uvloop(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` on uvloop where it is installed (a test server should not be the bottleneck)."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main)


async def _serve_forever(settings: FakeTeacherSettings) -> None:
    runner, url = await start_server(settings)
    print(f"listening on {url}", flush=True)
    print(f"fake teacher: {DESCRIPTION}", flush=True)
    await serve_until_signalled(runner)


async def serve_until_signalled(runner) -> None:
    """Keep a started aiohttp runner serving until SIGINT or SIGTERM, then clean it up."""
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    try:
        await done.wait()
    finally:
        await runner.cleanup()
