"""The fake teacher's OpenAI Files and Batches endpoints, for testing provider batch mode over real HTTP.

Routes (the subset of OpenAI's API that batch clients use, in its JSON shapes):
``POST /v1/files`` (multipart upload), ``GET /v1/files`` (``purpose``, ``after``, ``limit``, ``order``),
``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``, ``POST /v1/batches``,
``GET /v1/batches`` (``after``, ``limit``; newest first), ``GET /v1/batches/{id}``,
``POST /v1/batches/{id}/cancel``.

A batch moves validating → in_progress → finalizing → completed (or failed, expired, cancelled) while a task
executes its requests one by one with the chat endpoint's answers, ``batch_ms_per_request`` apart. Faults:
a fraction of requests answered 500 into the error file, the first N batches expiring part done (their
unexecuted requests land in the error file as ``batch_expired``, as OpenAI does), downloads torn half way,
and a latency on every files/batches call. ``GET /stats/batches`` lists every batch created and counts every
request executed by ``custom_id``, so a test can see money spent twice. ``batch_result_fault`` makes result
lines hostile, as the online hostile server's modes do: the key echoed (in the answer, the ``model`` field, an
error message cut inside it), an answer longer than ``max_tokens`` allows, a line of more than 2 MiB, and
``usage`` counts that are negative, beyond 64 bits or text (in the batch object's ``usage`` too). With ``batch_hold`` every batch
waits in progress until ``POST /control/batches/release`` (``?count=N``: the next N batches in creation order;
``?count=all``: every batch from now on) lets it run: a test then paces a run by its own steps, so a faster
or slower machine cannot finish the run before the test is done with it. Files live on disk (a temporary
directory unless ``batch_storage_dir`` is set), so a million-request upload does not sit in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from distill.testing.fake_teacher_answers import completion_body
from distill.testing.fake_teacher_faults import error_body, unit_draw

if TYPE_CHECKING:
    from distill.testing.fake_teacher_server import FakeTeacherHandlers

_LISTED_TWICE = 1000
_BAD_COUNTS = {"usage_negative": -5, "usage_huge": 1 << 70, "usage_text": "many"}
_HUGE_LINE_BYTES = 2 << 20  # beyond an answer's default limit (1 MiB + 512 bytes per max_tokens token)
_BATCH_ENDPOINT = "/v1/chat/completions"
_ENDED = ("completed", "failed", "expired", "cancelled")


def _max_tokens(body: dict[str, Any]) -> int:
    """The answer-length limit a request body asks for, under either field name."""
    return int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)


def _dumps(data: Any) -> bytes:
    """JSON, with integers beyond 64 bits as a careless provider would write them (orjson refuses them)."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(data), status=status, content_type="application/json")


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """OpenAI's cursor page: the items after the one with id ``after``, at most ``limit`` of them."""
    start = 0
    if after:
        start = next((index + 1 for index, item in enumerate(items) if item["id"] == after), len(items))
    data = items[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(items),
    }


class FakeBatches:
    """State and handlers of the files and batches endpoints of one fake teacher."""

    def __init__(self, teacher: FakeTeacherHandlers) -> None:
        self.teacher = teacher
        self.settings = teacher.settings
        configured = self.settings.batch_storage_dir
        self._owned_dir = configured is None
        self.storage = Path(configured or tempfile.mkdtemp(prefix="fake-batches-"))
        self.storage.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._ids = itertools.count(1)
        self.executed: Counter[str] = Counter()
        self.torn_downloads = 0
        self.content_downloads = 0
        self.calls_in_flight = 0
        self.max_calls_in_flight = 0
        self.released = 0  # with batch_hold: batches (by creation order) allowed to run
        self.release_all = False
        self.held = 0  # batches waiting for a release now
        self._gate = asyncio.Condition()

    # -- helpers ----------------------------------------------------------------------------------------

    @web.middleware
    async def count_calls(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """How many files/batches calls are in flight at once: a client's concurrency bound, seen from here."""
        if not request.path.startswith(("/v1/files", "/v1/batches")):
            return await handler(request)
        self.calls_in_flight += 1
        self.max_calls_in_flight = max(self.max_calls_in_flight, self.calls_in_flight)
        try:
            return await handler(request)
        finally:
            self.calls_in_flight -= 1

    async def _call_latency(self) -> None:
        if self.settings.batch_api_latency_ms:
            await asyncio.sleep(self.settings.batch_api_latency_ms / 1000.0)

    def _refused(self, request: web.Request) -> web.Response | None:
        key = self.teacher.key
        if key is not None and request.headers.get("Authorization") != f"Bearer {key}":
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
            # Echoes the key it got, as careless servers do, placed so that a cut at 300 characters falls
            # inside it: the client must scrub it before it cuts the message.
            message = "Incorrect API key provided".ljust(299 - len(sent) // 2, ".") + f" {sent}"
            return self.teacher.error(401, "invalid_api_key", message)
        return None

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}"

    def _add_file(self, path: Path, filename: str, purpose: str) -> dict[str, Any]:
        file_id = path.name
        record = {
            "id": file_id,
            "object": "file",
            "bytes": path.stat().st_size,
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self.files[file_id] = record
        return record

    def _not_found(self, kind: str, object_id: str) -> web.Response:
        return _json(error_body(404, "not_found", f"No such {kind}: '{object_id}'"), 404)

    # -- files ------------------------------------------------------------------------------------------

    async def upload_file(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        await self._call_latency()
        purpose = None
        filename = None
        file_id = self._new_id("file-")
        path = self.storage / file_id
        reader = await request.multipart()
        async for part in reader:
            if part.name == "purpose":
                purpose = (await part.text()).strip()
            elif part.name == "file":
                filename = part.filename or "upload.jsonl"
                with path.open("wb") as handle:
                    while chunk := await part.read_chunk(1 << 20):
                        handle.write(chunk)
        if filename is None or purpose is None:
            path.unlink(missing_ok=True)
            return _json(error_body(400, "invalid_request_error", "'file' and 'purpose' are required"), 400)
        return _json(self._add_file(path, filename, purpose))

    async def list_files(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        await self._call_latency()
        query = request.query
        items = [
            item for item in self.files.values() if item["purpose"] == query.get("purpose", item["purpose"])
        ]
        if query.get("order", "desc") == "desc":
            items.reverse()
        return _json(_page(items, query.get("after"), int(query.get("limit", 10000))))

    async def get_file(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        await self._call_latency()
        record = self.files.get(request.match_info["file_id"])
        return _json(record) if record else self._not_found("file", request.match_info["file_id"])

    async def delete_file(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        file_id = request.match_info["file_id"]
        record = self.files.pop(file_id, None)
        if record is None:
            return self._not_found("file", file_id)
        (self.storage / file_id).unlink(missing_ok=True)
        return _json({"id": file_id, "object": "file", "deleted": True})

    async def file_content(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        await self._call_latency()
        file_id = request.match_info["file_id"]
        if file_id not in self.files:
            return self._not_found("file", file_id)
        path = self.storage / file_id
        size = path.stat().st_size
        self.content_downloads += 1
        torn = unit_draw(self.settings.seed, "torn", file_id, self.content_downloads)
        cut = size // 2 if size and torn < self.settings.batch_torn_download_rate else size
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        with path.open("rb") as handle:
            left = cut
            while left > 0:
                chunk = handle.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
                await response.write(chunk)
        if cut < size:
            self.torn_downloads += 1
            if request.transport is not None:
                request.transport.abort()  # the client sees a body shorter than its Content-Length
            raise asyncio.CancelledError
        await response.write_eof()
        return response

    # -- batches ----------------------------------------------------------------------------------------

    async def create_batch(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        await self._call_latency()
        try:
            body = orjson.loads(await request.read())
            input_file_id = body["input_file_id"]
            endpoint = body["endpoint"]
            window = body["completion_window"]
            metadata = body.get("metadata") or {}
            if not isinstance(metadata, dict) or len(metadata) > 16:
                raise ValueError("metadata: at most 16 string pairs")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return _json(error_body(400, "invalid_request_error", f"Malformed batch request: {exc}"), 400)
        if input_file_id not in self.files:
            return self._not_found("file", input_file_id)
        if endpoint != _BATCH_ENDPOINT or window != "24h":
            message = f"unsupported endpoint {endpoint!r} or completion_window {window!r}"
            return _json(error_body(400, "invalid_request_error", message), 400)
        now = int(time.time())
        batch_id = self._new_id("batch_")
        batch: dict[str, Any] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": endpoint,
            "errors": None,
            "input_file_id": input_file_id,
            "completion_window": window,
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 24 * 3600,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "usage": None,
            "metadata": metadata,
            "model": None,
        }
        self.batches[batch_id] = batch
        task = asyncio.get_running_loop().create_task(self._execute(batch, len(self.batches)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return _json(batch)

    async def list_batches(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        await self._call_latency()
        items = list(reversed(self.batches.values()))  # newest first, as OpenAI lists them
        limit = max(1, min(100, int(request.query.get("limit", 20))))
        return _json(_page(items, request.query.get("after"), limit))

    async def get_batch(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        await self._call_latency()
        batch = self.batches.get(request.match_info["batch_id"])
        return _json(batch) if batch else self._not_found("batch", request.match_info["batch_id"])

    async def cancel_batch(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        await self._call_latency()
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return self._not_found("batch", request.match_info["batch_id"])
        if batch["status"] in _ENDED:
            message = f"Cannot cancel a batch with status {batch['status']}."
            return _json(error_body(400, "invalid_request_error", message), 400)
        if batch["status"] != "cancelling":
            batch["status"] = "cancelling"
            batch["cancelling_at"] = int(time.time())
            async with self._gate:  # a held batch ends once it is cancelled
                self._gate.notify_all()
        return _json(batch)

    async def release(self, request: web.Request) -> web.Response:
        """With ``batch_hold``: let the next ``count`` batches (in creation order) run, or all with ``all``."""
        count = request.query.get("count", "1")
        async with self._gate:
            if count == "all":
                self.release_all = True
            elif count.isdigit():
                self.released += int(count)
            else:
                return _json(error_body(400, "invalid_request_error", "count must be a number or 'all'"), 400)
            self._gate.notify_all()
        return _json({"released": self.released, "release_all": self.release_all, "held": self.held})

    async def _wait_for_release(self, batch: dict[str, Any], serial: int) -> None:
        async with self._gate:
            self.held += 1
            try:
                await self._gate.wait_for(
                    lambda: self.release_all or serial <= self.released or batch["status"] == "cancelling"
                )
            finally:
                self.held -= 1

    async def stats(self, request: web.Request) -> web.Response:
        twice = {custom_id: n for custom_id, n in self.executed.items() if n > 1}
        return _json(
            {
                "batches_created": len(self.batches),
                "batches": [
                    {
                        key: batch[key]
                        for key in ("id", "status", "metadata", "input_file_id", "request_counts")
                    }
                    for batch in self.batches.values()
                ],
                "files_uploaded": sum(1 for item in self.files.values() if item["purpose"] == "batch"),
                "requests_executed": sum(self.executed.values()),
                "unique_requests_executed": len(self.executed),
                "duplicate_executions": sum(n - 1 for n in twice.values()),
                "executed_twice": dict(itertools.islice(twice.items(), _LISTED_TWICE)),
                "max_calls_in_flight": self.max_calls_in_flight,
                "content_downloads": self.content_downloads,
                "torn_downloads": self.torn_downloads,
                "held": self.held,
            }
        )

    # -- execution --------------------------------------------------------------------------------------

    def _read_requests(self, batch: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The input file's requests, or the validation errors that fail the batch (as OpenAI reports them)."""
        path = self.storage / batch["input_file_id"]
        settings = self.settings
        errors: list[dict[str, Any]] = []
        if path.stat().st_size > settings.batch_max_bytes:
            errors.append(
                {"code": "file_too_large", "message": "input file exceeds the size limit", "line": None}
            )
        requests: list[dict[str, Any]] = []
        seen: set[str] = set()
        with path.open("rb") as handle:
            for line, raw in enumerate(handle, start=1):
                try:
                    item = orjson.loads(raw)
                    custom_id = item["custom_id"]
                    if not isinstance(custom_id, str) or custom_id in seen:
                        raise ValueError(f"custom_id {custom_id!r} missing or repeated")
                    if item.get("method") != "POST" or item.get("url") != batch["endpoint"]:
                        raise ValueError("method must be POST and url the batch's endpoint")
                    if not isinstance(item.get("body"), dict):
                        raise ValueError("body must be an object")
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    errors.append({"code": "invalid_request", "message": str(exc), "line": line})
                    if len(errors) >= 10:
                        break
                    continue
                seen.add(custom_id)
                requests.append(item)
        if len(requests) > settings.batch_max_requests:
            errors.append(
                {"code": "too_many_requests", "message": "too many requests in one file", "line": None}
            )
        return requests, errors

    def _answer_line(
        self, item: dict[str, Any], batch_id: str, usage_total: Counter[str]
    ) -> tuple[bytes, bool]:
        custom_id, body = item["custom_id"], item["body"]
        self.executed[custom_id] += 1
        request_id = f"req_{batch_id}_{custom_id}"
        if unit_draw(self.settings.seed, "batch_error", custom_id) < self.settings.batch_error_rate:
            response = {
                "status_code": 500,
                "request_id": request_id,
                "body": error_body(
                    500, "server_error", "The server had an error while processing your request."
                ),
            }
            return orjson.dumps(
                {"id": request_id, "custom_id": custom_id, "response": response, "error": None}
            ), False
        text, finish_reason, prompt_tokens, completion_tokens = self.teacher.answer_within_limit(
            body, custom_id
        )
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        usage_total["input"] += prompt_tokens
        usage_total["output"] += completion_tokens
        model = str(body.get("model") or self.settings.model)
        fault = self.settings.batch_result_fault
        if (
            fault is None
            or unit_draw(self.settings.seed, "batch_fault", custom_id)
            >= self.settings.batch_result_fault_rate
        ):
            fault = None
        key = self.teacher.key or ""
        max_tokens = _max_tokens(body)
        if fault == "echo_key_error":
            # The key placed so that a cut at 300 characters falls inside it.
            message = "x" * (300 - len(key) // 2) + f" {key} was not accepted for this request"
            response = {"status_code": 400, "request_id": request_id, "body": error_body(400, "bad", message)}
            line = {"id": request_id, "custom_id": custom_id, "response": response, "error": None}
            return orjson.dumps(line), False
        if fault == "echo_key_answer":
            text += f"\n(request signed with {key})"
        elif fault == "echo_key_model":
            model = key
        elif fault == "long_answer":
            text = "长" * (64 * int(max_tokens) + 2048)
        elif fault == "huge_line":
            text = "x" * (_HUGE_LINE_BYTES + 512 * int(max_tokens))
        elif fault in _BAD_COUNTS:
            usage["prompt_tokens"] = _BAD_COUNTS[fault]
        payload = completion_body(
            f"chatcmpl-{custom_id}", int(time.time()), model, text, finish_reason, usage
        )
        response = {"status_code": 200, "request_id": request_id, "body": payload}
        return _dumps({"id": request_id, "custom_id": custom_id, "response": response, "error": None}), True

    async def _execute(self, batch: dict[str, Any], serial: int) -> None:
        settings = self.settings
        await asyncio.sleep(settings.batch_validating_ms / 1000.0)
        requests, errors = self._read_requests(batch)
        if errors or not requests:
            batch["status"] = "failed"
            batch["failed_at"] = int(time.time())
            batch["errors"] = {
                "object": "list",
                "data": errors or [{"code": "empty_file", "message": "no requests"}],
            }
            return
        counts = batch["request_counts"]
        counts["total"] = len(requests)
        batch["model"] = requests[0]["body"].get("model")
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
            batch["in_progress_at"] = int(time.time())
        if settings.batch_hold:
            await self._wait_for_release(batch, serial)
        expire_at = None
        if serial <= settings.batch_expire_first:
            expire_at = int(len(requests) * settings.batch_expire_after)
        output_path = self.storage / self._new_id("file-")
        error_path = self.storage / self._new_id("file-")
        usage_total: Counter[str] = Counter()
        step_s = settings.batch_ms_per_request / 1000.0
        owed = 0.0
        executed = 0
        ended = "completed"
        with output_path.open("wb") as output, error_path.open("wb") as error_file:
            for index, item in enumerate(requests):
                if batch["status"] == "cancelling":
                    ended = "cancelled"
                    break
                if expire_at is not None and index >= expire_at:
                    ended = "expired"
                    break
                owed += step_s
                if owed >= 0.002 or index % 256 == 0:
                    await asyncio.sleep(owed)
                    owed = 0.0
                    if batch["status"] == "cancelling":
                        ended = "cancelled"
                        break
                line, ok = self._answer_line(item, batch["id"], usage_total)
                (output if ok else error_file).write(line + b"\n")
                counts["completed" if ok else "failed"] += 1
                executed += 1
            if settings.batch_result_fault == "padded_file":  # every line within its bound, the file beyond
                max_tokens = max(_max_tokens(item["body"]) for item in requests)
                output.write(b"\n" * (3 * len(requests) * (_HUGE_LINE_BYTES + 512 * max_tokens)))
            code = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(ended)
            if code is not None:
                message = f"This request could not be executed before the batch was {ended}."
                for item in requests[executed:]:
                    error = {"code": code, "message": message}
                    custom_id = item["custom_id"]
                    line = {"id": f"req_{batch['id']}_{custom_id}", "custom_id": custom_id, "response": None}
                    line["error"] = error
                    error_file.write(orjson.dumps(line) + b"\n")
        if ended != "expired":
            # Completed batches finalize; cancelled ones stay "cancelling" while their files are written.
            if ended == "completed":
                batch["status"] = "finalizing"
                batch["finalizing_at"] = int(time.time())
            await asyncio.sleep(settings.batch_finalizing_ms / 1000.0)
        for path, key in ((output_path, "output_file_id"), (error_path, "error_file_id")):
            if path.stat().st_size:
                batch[key] = self._add_file(path, f"{batch['id']}_{key.split('_')[0]}.jsonl", "batch_output")[
                    "id"
                ]
            else:
                path.unlink()
        batch["usage"] = {
            "input_tokens": _BAD_COUNTS.get(str(settings.batch_result_fault), usage_total["input"]),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage_total["output"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage_total["input"] + usage_total["output"],
        }
        batch["status"] = ended
        batch[f"{ended}_at"] = int(time.time())

    async def close(self, app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._owned_dir:
            shutil.rmtree(self.storage, ignore_errors=True)


def add_batch_routes(app: web.Application, teacher: FakeTeacherHandlers) -> FakeBatches:
    """Register the files and batches endpoints on the fake teacher's app."""
    batches = FakeBatches(teacher)
    app.router.add_post("/v1/files", batches.upload_file)
    app.router.add_get("/v1/files", batches.list_files)
    app.router.add_get("/v1/files/{file_id}", batches.get_file)
    app.router.add_delete("/v1/files/{file_id}", batches.delete_file)
    app.router.add_get("/v1/files/{file_id}/content", batches.file_content)
    app.router.add_post("/v1/batches", batches.create_batch)
    app.router.add_get("/v1/batches", batches.list_batches)
    app.router.add_get("/v1/batches/{batch_id}", batches.get_batch)
    app.router.add_post("/v1/batches/{batch_id}/cancel", batches.cancel_batch)
    app.router.add_get("/stats/batches", batches.stats)
    app.router.add_post("/control/batches/release", batches.release)
    app.middlewares.append(batches.count_calls)
    app.on_cleanup.append(batches.close)
    return batches
