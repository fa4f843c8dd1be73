"""The review page's web server: aiohttp on 127.0.0.1, the page and its JSON API, nothing from elsewhere.

Safe by default:
- It binds 127.0.0.1 and answers only requests whose Host is that address or ``localhost`` at its port, so a
  web page elsewhere cannot reach it through DNS rebinding.
- With ``--host`` (any other address) every request needs the access token printed in the URL; the page
  trades it for a ``SameSite=Strict`` cookie so it never travels in later URLs or referrers.
- A change (POST) must be JSON from the page's own origin: another site's form or script cannot post one.
- Every response carries a Content-Security-Policy that allows only this server's own script and style: no
  inline script, no CDN, no fonts, no images from anywhere. Model output is put into the page as text only.
"""

from __future__ import annotations

import asyncio
import hmac
import signal
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from distill.errors import UserError
from distill.review.decisions import DecisionRefused
from distill.review.query import QueryError

TOKEN_COOKIE = "distill_review_token"
MAX_BODY_BYTES = 1024 * 1024
_STATIC = {
    "review.css": "text/css",
    "common.js": "text/javascript",
    "run.js": "text/javascript",
    "eval.js": "text/javascript",
}
_PAGES = {"run": "run.html", "eval": "eval.html"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class Guard:
    """Who may talk to the server, and the headers every answer carries."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.allowed_hosts: set[str] = set()
        self.allowed_origins: set[str] = set()

    def bound(self, port: int) -> None:
        for host in LOOPBACK_HOSTS:
            name = f"[{host}]" if ":" in host else host
            self.allowed_hosts.add(f"{name}:{port}")
            self.allowed_origins.add(f"http://{name}:{port}")

    def _token_ok(self, request: web.Request) -> bool:
        assert self.token is not None
        for supplied in (
            request.query.get("token"),
            request.cookies.get(TOKEN_COOKIE),
            request.headers.get("X-Review-Token"),
        ):
            if supplied and hmac.compare_digest(supplied.encode(), self.token.encode()):
                return True
        return False

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ):
        if self.token is None and request.host not in self.allowed_hosts:
            return web.Response(status=403, text="distill review answers on 127.0.0.1 only")
        if self.token is not None and not self._token_ok(request):
            return web.Response(
                status=401, text="access token required: open the URL `distill review` printed"
            )
        if request.method not in ("GET", "HEAD"):
            if request.content_type != "application/json":
                return _error(415, "changes are sent as application/json by the review page")
            origin = request.headers.get("Origin")
            if origin is not None and self.token is None and origin not in self.allowed_origins:
                return _error(403, "a change must come from the review page itself")
            if origin is not None and self.token is not None and origin.split("://", 1)[-1] != request.host:
                return _error(403, "a change must come from the review page itself")
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        response.headers.update(_SECURITY_HEADERS)
        if self.token is not None and request.query.get("token"):
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return response


def _static_files() -> dict[str, bytes]:
    folder = resources.files("distill.review").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in (*_STATIC, *_PAGES.values())}


async def _read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: not a whole number") from None


def make_app(session: Any, token: str | None = None) -> tuple[web.Application, Guard]:
    """The application for a `RunReview` (mode "run") or an `EvalReview` (mode "eval")."""
    guard = Guard(token)
    app = web.Application(middlewares=[guard.middleware], client_max_size=MAX_BODY_BYTES)
    files = _static_files()
    page = files[_PAGES[session.meta()["mode"]]]

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=files[name], content_type=_STATIC[name], charset="utf-8")

    def api(
        function: Callable[[web.Request], Awaitable[Any]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            try:
                return _json(await function(request))
            except (DecisionRefused, QueryError) as exc:
                return _error(422 if isinstance(exc, DecisionRefused) else 400, str(exc))
            except KeyError:
                return _error(404, "no such record")
            except UserError as exc:
                return _error(500, str(exc))

        return handler

    async def meta(request: web.Request) -> Any:
        return session.meta()

    async def report(request: web.Request) -> Any:
        return session.report()

    async def no_icon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/meta", api(meta))
    app.router.add_get("/api/report", api(report))
    if session.meta()["mode"] == "run":
        _run_routes(app, session, api)
    else:
        _eval_routes(app, session, api)
    return app, guard


def _run_routes(app: web.Application, session: Any, api: Callable) -> None:
    async def records(request: web.Request) -> Any:
        return session.page(dict(request.query))

    async def record(request: web.Request) -> Any:
        return session.record(_int(request.match_info["row"], "row"))

    async def progress(request: web.Request) -> Any:
        return session.progress()

    async def decide(request: web.Request) -> Any:
        return session.decide(_int(request.match_info["row"], "row"), await _read_json(request))

    async def finish(request: web.Request) -> Any:
        await _read_json(request)
        return session.finish()

    app.router.add_get("/api/records", api(records))
    app.router.add_get("/api/records/{row}", api(record))
    app.router.add_get("/api/progress", api(progress))
    app.router.add_post("/api/records/{row}/decision", api(decide))
    app.router.add_post("/api/finish", api(finish))


def _eval_routes(app: web.Application, session: Any, api: Callable) -> None:
    async def pairs(request: web.Request) -> Any:
        return session.page(dict(request.query))

    async def pair(request: web.Request) -> Any:
        return session.pair(_int(request.match_info["n"], "n"))

    async def prefer(request: web.Request) -> Any:
        return session.prefer(_int(request.match_info["n"], "n"), await _read_json(request))

    app.router.add_get("/api/pairs", api(pairs))
    app.router.add_get("/api/pairs/{n}", api(pair))
    app.router.add_post("/api/pairs/{n}/preference", api(prefer))


def page_url(host: str, port: int, token: str | None) -> str:
    name = f"[{host}]" if ":" in host else host
    return f"http://{name}:{port}/" + (f"?token={token}" if token else "")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket; binding it ourselves tells us the real port when --port is 0."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, protocol, _, address = infos[0]
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UserError(
            f"--port {port}: cannot listen on {host}: {exc.strerror} (--port 0 picks a free port)"
        ) from None
    sock.setblocking(False)
    return sock


async def serve(
    session: Any,
    *,
    host: str,
    port: int,
    token: str | None,
    say: Callable[[str], None],
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or until ``stop`` is set, when given)."""
    app, guard = make_app(session, token)
    sock = _listen(host, port)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        bound = sock.getsockname()[1]
        guard.bound(bound)
        note = " (listening on every address: put this machine's name or address in place of it)"
        say(f"review page: {page_url(host, bound, token)}" + (note if host in ("0.0.0.0", "::") else ""))
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
