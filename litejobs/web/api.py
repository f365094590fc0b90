"""The HTTP API (``litejobs serve --api``, ``asgi(app, api=True)``): enqueue, read, cancel and
retry jobs, complete tokens, publish deliveries and manage stored schedules, JSON in and out,
under ``/api/v1``.

Every request needs ``Authorization: Bearer <token>`` with one of ``LITEJOBS_API_TOKEN``'s
comma-separated tokens (each compared in constant time). A bearer token is not ambient (a
browser never adds it by itself), so the dashboard's CSRF check does not apply here; read-only
mode still refuses every write (403). Only the app's registered tasks may be enqueued. A body
over the app's ``max_payload`` (plus ``ENVELOPE`` for the other fields) is refused with 413
before it is read whole. Errors are ``{"error": "..."}`` with 400, 401, 403, 404, 409, 413,
422 or 503. Nothing of a request's body is logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from litejobs.calls import named_call
from litejobs.errors import ConfigError, StorageError
from litejobs.job import Job
from litejobs.redact import mask, mask_args
from litejobs.serialization import PayloadTooLarge
from litejobs.store.schema import TOKEN_TASK
from litejobs.task import PLAIN, CallOptions
from litejobs.validate import INT64_MAX
from litejobs.web.apibody import (
    ENVELOPE,
    ApiError,
    guarded,
    key_of,
    only_fields,
    read_json,
    run_at_of,
    too_large,
    typed,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

    from litejobs.app import App
    from litejobs.newjob import NewJob
    from litejobs.web.context import Ui

__all__ = ["PREFIX", "ApiError", "api_tokens", "job_object", "known_task", "mount", "new_job",
           "show_object"]

log = logging.getLogger("litejobs.web")

#: Where the API lives, below the dashboard's base path.
PREFIX = "/api/v1"
TOKEN_ENV = "LITEJOBS_API_TOKEN"
#: Task names an unknown-task error lists before "… and N more".
NAMES_SHOWN = 30
JOB_FIELDS = ("task", "args", "kwargs", "delay", "run_at", "queue", "priority", "key", "tags")
#: The package's own tasks (litejobs.deliver): each has its own door.
BUILT_IN = "litejobs."
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def api_tokens(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The tokens ``LITEJOBS_API_TOKEN`` allows; ConfigError (one line) when there is none."""
    env = os.environ if env is None else env
    tokens = tuple(t.strip() for t in env.get(TOKEN_ENV, "").split(",") if t.strip())
    if not tokens:
        raise ConfigError(f"the HTTP API (--api) needs a token: set {TOKEN_ENV} to a long "
                          "random value (several: comma-separated), e.g. "
                          f"{TOKEN_ENV}=$(python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))')")
    return tokens


def _allowed(authorization: str | None, tokens: tuple[str, ...]) -> bool:
    kind, _, given = (authorization or "").strip().partition(" ")
    if kind.lower() != "bearer" or not given.strip():
        return False
    raw = given.strip().encode()
    # every token compared, whichever matches: the time taken tells nothing
    hits = [hmac.compare_digest(raw, t.encode()) for t in tokens]
    return any(hits)


async def _json(send: Send, status: int, message: str,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class ApiGuard:
    """Before any endpoint: the bearer token (401), read-only (403), a declared body over the
    cap (413, nothing of it read)."""

    def __init__(self, app: ASGIApp, tokens: tuple[str, ...], read_only: bool, cap: int,
                 ) -> None:
        self.app = app
        self.tokens = tokens
        self.read_only = read_only
        self.cap = cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        if not _allowed(headers.get(b"authorization", b"").decode("latin-1"), self.tokens):
            await _json(send, 401, f"missing or wrong API token: send 'Authorization: Bearer "
                        f"<token>' with one of the tokens in the server's {TOKEN_ENV}",
                        [(b"www-authenticate", b'Bearer realm="litejobs"')])
            return
        if self.read_only and scope["method"] in WRITES:
            await _json(send, 403, "this server is read-only (--read-only): the API only "
                        "reads; serve without --read-only to enqueue or change jobs")
            return
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.cap:
            await _json(send, 413, too_large(self.cap))
            return
        await self.app(scope, receive, send)


def known_task(app: App, task: Any) -> str:
    if not isinstance(task, str) or not task:
        raise ApiError(400, "'task' must be a task name (a string), e.g. \"send_email\"")
    if task.startswith(BUILT_IN):
        # litejobs.deliver through here would skip app.deliver's checks (allowed hosts)
        raise ApiError(422, f"{task!r} is built in, not enqueued by name: POST "
                            f"{PREFIX}/publish makes a delivery")
    if task not in app.tasks:
        names = sorted(n for n in app.tasks if not n.startswith(BUILT_IN))
        shown = ", ".join(names[:NAMES_SHOWN]) or "none"
        more = f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
        raise ApiError(422, f"unknown task {task!r}: only the app's registered tasks can be "
                            f"enqueued; it has {shown}{more}")
    return task


def job_object(app: App, job: Job) -> dict[str, Any]:
    """``job.to_dict()`` with the task's ``redact`` arguments masked."""
    d = job.to_dict()
    d["args"] = mask_args(app, d["task"], d["args"])
    d["kwargs"] = mask(app, d["task"], d["kwargs"])
    return d


def show_object(app: App, job: Job) -> dict[str, Any]:
    """The object of ``litejobs show --json``: the masked job, its workflow facts and its
    attempts."""
    from litejobs.cli.workflows import step_facts

    data = job_object(app, job)
    data.update(step_facts(app, job))
    data["attempts"] = [a.to_dict() for a in job.attempts()]
    return data


def _job(app: App, job_id: int) -> Job:
    job = app.get_job(job_id) if 0 < job_id <= INT64_MAX else None
    if job is None:
        raise ApiError(404, f"no job with id {job_id} (never enqueued, or pruned after its "
                            "retention); check the id the enqueue answered with")
    return job


# --- the endpoints' work (new_job in the event loop; the rest in a worker thread: SQLite may
# wait on its lock) ---------------------------------------------------------------------------


def new_job(app: App, body: dict[str, Any], key: str | None) -> NewJob:
    """The job ``POST /jobs`` asks for, validated and encoded as ``app.enqueue`` would (a
    registered task only); ApiError when it cannot be."""
    only_fields(body, JOB_FIELDS, "a job")
    task = app.tasks[known_task(app, body.get("task"))]
    args = typed(body, "args", (list,), "an array of arguments") or []
    kwargs = typed(body, "kwargs", (dict,), "an object of keyword arguments") or {}
    options: dict[str, Any] = {
        "delay": typed(body, "delay", (int, float), "a number of seconds"),
        "run_at": run_at_of(body.get("run_at")),
        "queue": typed(body, "queue", (str,), "a queue name"),
        "priority": typed(body, "priority", (int,), "an integer from -100 to 100"),
        "tags": typed(body, "tags", (list,), "an array of strings"),
        "key": key,
    }
    given = {k: v for k, v in options.items() if v is not None}
    call = named_call(app, task.name, args, kwargs, CallOptions(**given) if given else PLAIN)
    job: NewJob = guarded(lambda: app.build_job(call, time.time()))
    return job


def cancel(app: App, job_id: int) -> dict[str, Any]:
    job = _job(app, job_id)
    if not job.cancel():
        raise ApiError(409, f"job {job_id} already ended {job.state.value}: nothing to cancel")
    return job_object(app, job)


def retry(app: App, job_id: int) -> dict[str, Any]:
    job = _job(app, job_id)
    if job.task == TOKEN_TASK:
        raise ApiError(409, f"job {job_id} is a token: complete it (POST "
                            f"{PREFIX}/tokens/{job_id}/complete), a token is not retried")
    try:
        done = job.retry()
    except ValueError as exc:
        raise ApiError(409, str(exc)) from None
    if not done:
        raise ApiError(409, f"job {job_id} is {job.state.value}: only a failed or cancelled "
                            "job can be retried")
    return job_object(app, job)


def complete(app: App, token_id: int, body: dict[str, Any]) -> dict[str, Any]:
    only_fields(body, ("data",), "a token's completion")
    job = _job(app, token_id)
    if job.task != TOKEN_TASK:
        raise ApiError(404, f"job {token_id} is not a token; give the id app.create_token() "
                            "returned")
    try:
        app.complete_token(token_id, body.get("data"))
    except PayloadTooLarge as exc:
        raise ApiError(413, str(exc)) from None
    except TypeError as exc:
        raise ApiError(400, str(exc)) from None
    except ValueError as exc:
        if "max_payload" in str(exc):
            raise ApiError(413, str(exc)) from None
        raise ApiError(409, str(exc)) from None
    return job_object(app, _job(app, token_id))


def internal(request: Request, exc: Exception) -> Response:
    """500 for what no rule foresaw; the log names its type only: a traceback's message may
    quote an argument."""
    from starlette.responses import JSONResponse

    log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse({"error": f"internal error ({type(exc).__name__}); the server's log "
                         "has the time, retry or report it"}, status_code=500)


def mount(ui: Ui, tokens: tuple[str, ...]) -> Any:
    """The API's ASGI app, to mount at ``PREFIX``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from litejobs.web import apiroutes
    from litejobs.web.apibatch import Batcher

    app = ui.app
    cap = app.max_payload + ENVELOPE
    batcher = Batcher(app)

    def endpoint(work: Callable[[Request, dict[str, Any]], Any], status: int = 200,
                 reads_body: bool = True) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                body = await read_json(request, cap) if reads_body else {}
                result = await run_in_threadpool(work, request, body)
            except ApiError as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            except ConfigError as exc:
                return JSONResponse({"error": str(exc)}, status_code=503)
            except Exception as exc:
                return internal(request, exc)
            code, data = result if isinstance(result, tuple) else (status, result)
            return JSONResponse(data, status_code=code)

        return handle

    def job_id(request: Request) -> int:
        return int(request.path_params["job_id"])

    async def enqueue(request: Request) -> Response:
        # in the event loop but for the write: parsing and encoding take microseconds, and
        # the write is shared with the requests that arrive meanwhile (apibatch)
        try:
            body = await read_json(request, cap)
            job = new_job(app, body, key_of(request, body))
            try:
                row, created = await batcher.insert(job)
            except StorageError as exc:
                raise ApiError(503, f"the database cannot take writes now ({exc}); retry "
                                    "later") from None
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except Exception as exc:
            return internal(request, exc)
        return JSONResponse(job_object(app, Job(app, row)), status_code=201 if created else 200)

    routes = [
        Route("/jobs", enqueue, methods=["POST"]),
        Route("/jobs/{job_id:int}", endpoint(lambda r, b: show_object(app, _job(app, job_id(r))),
                                             reads_body=False), methods=["GET"]),
        Route("/jobs/{job_id:int}/cancel", endpoint(lambda r, b: cancel(app, job_id(r))),
              methods=["POST"]),
        Route("/jobs/{job_id:int}/retry", endpoint(lambda r, b: retry(app, job_id(r))),
              methods=["POST"]),
        Route("/tokens/{job_id:int}/complete",
              endpoint(lambda r, b: complete(app, job_id(r), b)), methods=["POST"]),
        *apiroutes.routes(app, endpoint, key_of),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        what = {404: f"no such endpoint: the API's paths are under {PREFIX} (see docs/http.md)",
                405: f"{request.method} is not allowed here"}.get(exc.status_code, exc.detail)
        return JSONResponse({"error": what}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    web = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    return ApiGuard(web, tokens, ui.read_only, cap)
