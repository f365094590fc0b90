"""Deliver over HTTP: ``app.deliver(url, ...)`` enqueues the built-in task ``litejobs.deliver``.

The producer's side lives here (the arguments checked at the door, the job's options); the
request itself is sent by ``litejobs.sending`` in the worker, with httpx (the ``http`` extra),
imported only when a delivery runs. Every App registers the task (``register``), so every
worker can run deliveries without the app's code knowing about them.

Retries: connection errors, timeouts, 5xx, 408 and 429 are retried (``Retry-After`` honoured),
other 4xx fail at once. ``callback`` / ``failure_callback`` get a JSON summary, themselves as
``litejobs.deliver`` jobs, enqueued by the attempt that ends the delivery just before its
outcome is reported (see docs/http.md for what a crash in between can do).
"""

from __future__ import annotations

import json as jsonlib
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from litejobs.errors import JobTimeout, WorkerDied
from litejobs.httpconfig import HttpConfig
from litejobs.serialization import why_not_json
from litejobs.task import Backoff
from litejobs.validate import check_retries, check_seconds

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.job import Job

__all__ = ["HTTP_EXTRA", "METHODS", "TASK", "DeliveryFailed", "DeliveryRetry", "deliver",
           "host_allowed", "http_settings", "register"]

TASK = "litejobs.deliver"
HTTP_EXTRA = "pip install 'litejobs[http]'"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_URL = 8192
#: Headers a caller may not set: httpx computes them, or litejobs does.
_RESERVED = {"host", "content-length", "transfer-encoding", "connection",
             "litejobs-signature", "litejobs-job-id", "litejobs-attempt"}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: A job's hard timeout is this many times its request timeout, plus a margin: the request
#: has its own deadline; this only ends a worker stuck past it.
_HARD_FACTOR = 3


class DeliveryFailed(Exception):
    """A delivery failed for good: a 4xx answer, a refused host or redirect, no httpx.
    ``status``: the receiver's answer, when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DeliveryRetry(Exception):
    """A delivery to try again: a connection error, a timeout, 5xx, 408 or 429.
    ``retry_after``: the seconds the receiver asked for (``Retry-After``), or None."""

    def __init__(self, message: str, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class DeliveryBackoff(Backoff):
    """The task's back-off: the job's exponential one, unless the receiver said when
    (``Retry-After``, carried by the attempt's DeliveryRetry)."""

    def delay_after(self, k: int, error: BaseException | None) -> float:
        if isinstance(error, DeliveryRetry) and error.retry_after is not None:
            return error.retry_after
        return self.delay(k)


def register(app: App) -> None:
    """Register the built-in task ``litejobs.deliver`` in ``app`` (every App does)."""
    def deliver_task(url: str, method: str = "POST", headers: dict[str, str] | None = None,
                     json: Any = None, body: str | None = None, body_b64: str | None = None,
                     timeout: float | None = None, callback: str | None = None,
                     failure_callback: str | None = None) -> dict[str, Any]:
        from litejobs.sending import run_delivery  # httpx with it, when a delivery runs

        return run_delivery(app, url, method, headers or {}, json, body, body_b64, timeout,
                            callback, failure_callback)

    app.task(name=TASK, retries=5, backoff=DeliveryBackoff(),
             retry_on=(DeliveryRetry, JobTimeout, WorkerDied),
             redact=["headers"])(deliver_task)


_file_settings: HttpConfig | None = None
_httpx_found = False


def _has_httpx() -> bool:
    """Whether httpx can be imported (looked for, not imported: the producer never needs
    it). Found once, it stays found: looking costs ~0.1 ms, half an enqueue."""
    global _httpx_found
    if not _httpx_found:
        import importlib.util

        _httpx_found = importlib.util.find_spec("httpx") is not None
    return _httpx_found


def http_settings(app: App) -> HttpConfig:
    """The ``[http]`` settings deliveries of ``app`` obey: its config's when it was read from
    a file (``App.from_config``) or given one, else those of ``LITEJOBS_CONFIG`` or
    ./litejobs.toml (what `litejobs run` read, since workers share its directory and
    environment); ``LITEJOBS_SIGNING_SECRET`` wins over either."""
    global _file_settings
    settings = app.config.http
    if app.config.source is None and settings == HttpConfig():
        if _file_settings is None:
            from litejobs.config import load_config

            _file_settings = load_config().http
        settings = _file_settings
    secret = os.environ.get("LITEJOBS_SIGNING_SECRET")
    if secret and secret != settings.signing_secret:
        from dataclasses import replace

        settings = replace(settings, signing_secret=secret)
    return settings


def host_allowed(host: str, allowed: tuple[str, ...] | None) -> bool:
    """Whether ``host`` is in ``[http] allowed_hosts`` (None: every host is)."""
    if allowed is None:
        return True
    host = host.lower().rstrip(".")
    for pattern in allowed:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def check_url(what: str, url: object, settings: HttpConfig) -> str:
    """``url`` if a delivery may go there; ValueError saying why not."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise ValueError(f"{what} must be an http:// or https:// URL of at most {MAX_URL} "
                         f"characters, not {url!r:.80}")
    if _BAD_VALUE.search(url) or " " in url:
        raise ValueError(f"{what} {url!r:.80} contains spaces or control characters; "
                         "percent-encode them")
    from urllib.parse import urlsplit  # (and ipaddress): only a delivery needs them

    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  # a bad port raises here, not in the worker
    except ValueError as exc:
        raise ValueError(f"{what} {url!r:.80} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"{what} must be an http:// or https:// URL with a host, not "
                         f"{url!r:.80}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} {url!r:.80} carries credentials: pass them in headers= "
                         "(hidden from the dashboard and the CLI), not in the URL")
    if not host_allowed(host, settings.allowed_hosts):
        raise ValueError(f"{what} {url!r:.80}: host {host!r} is not in [http] allowed_hosts "
                         f"({', '.join(settings.allowed_hosts or ())}); add it there if "
                         "deliveries may go to it")
    return url


def _check_headers(headers: object) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a dict of str to str, not {type(headers).__name__}")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"headers must map str to str: {name!r}: {value!r:.60} is not")
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if _BAD_VALUE.search(value):
            raise ValueError(f"header {name!r} has a line break or control character in its "
                             "value; remove it")
        if name.lower() in _RESERVED:
            raise ValueError(f"header {name!r} is set by litejobs or httpx; leave it out")
        out[name] = value
    return out


def deliver(
    app: App,
    url: str,
    json: Any = None,
    body: str | bytes | None = None,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
    retries: int = 5,
    callback: str | None = None,
    failure_callback: str | None = None,
    key: str | None = None,
    delay: float | None = None,
    flow_key: str | None = None,
    rate_limit: str | None = None,
    concurrency_limit: int | None = None,
) -> Job:
    """Enqueue an HTTP request to ``url`` (the task ``litejobs.deliver``); see docs/http.md.

    ``json`` (any JSON value, sent as application/json) or ``body`` (str, or bytes), not
    both. ``timeout``: seconds for the connection and each read (default ``[http] timeout``,
    30). ``retries``: more attempts after connection errors, timeouts, 5xx, 408 and 429
    (``Retry-After`` honoured); other 4xx fail at once. ``callback`` / ``failure_callback``:
    URLs that get a JSON summary when the delivery succeeded / failed for good. ``key``: an
    idempotency key (a second call with it returns the first job). ``flow_key`` with
    ``rate_limit`` ("N/s|m|h") and ``concurrency_limit``: per-key flow control. The job's
    result is ``{"status", "headers", "body"}`` (the body's first 64 KiB). Raises
    ValueError/TypeError for a bad argument, ImportError without httpx."""
    if not _has_httpx():
        raise ImportError(f"app.deliver needs httpx, which is not installed: {HTTP_EXTRA}")
    settings = http_settings(app)
    request: dict[str, Any] = {"url": check_url("url", url, settings)}
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r:.40}")
    request["method"] = method.upper()
    checked = _check_headers(headers)
    if checked:
        request["headers"] = checked
    if json is not None and body is not None:
        raise ValueError("give json= or body=, not both")
    if json is not None:
        problem = why_not_json(json)
        if problem is not None:
            raise TypeError(f"json must be a JSON value: {problem}")
        request["json"] = json
    elif isinstance(body, bytes | bytearray | memoryview):
        import base64

        request["body_b64"] = base64.b64encode(bytes(body)).decode("ascii")
    elif isinstance(body, str):
        request["body"] = body
    elif body is not None:
        raise TypeError(f"body must be str or bytes, not {type(body).__name__}")
    if timeout is not None:
        request["timeout"] = check_seconds("timeout", timeout, allow_zero=False)
    wait = request.get("timeout", settings.timeout)
    for name, target in (("callback", callback), ("failure_callback", failure_callback)):
        if target is not None:
            request[name] = check_url(name, target, settings)
    options: dict[str, Any] = {"retries": check_retries(retries), "key": key, "delay": delay,
                               "timeout": wait * _HARD_FACTOR + 10}
    options.update(_flow_options(flow_key, rate_limit, concurrency_limit))
    return app.enqueue(TASK, (), request, **options)


def _flow_options(flow_key: str | None, rate_limit: str | None,
                  concurrency_limit: int | None) -> dict[str, Any]:
    """The job's flow-control options (per ``flow_key``: enforced in the claim)."""
    given = {"flow_key": flow_key, "rate_limit": rate_limit,
             "concurrency_limit": concurrency_limit}
    return {k: v for k, v in given.items() if v is not None}


def summary(job_id: int, url: str, attempts: int, state: str,
            result: dict[str, Any] | None, error: str | None,
            status: int | None = None) -> dict[str, Any]:
    """What a callback receives (as JSON): the delivery's job, its URL and its end
    (``status``: the last answer's, None when there was none)."""
    if result is not None:
        status = result.get("status")
    out: dict[str, Any] = {"job": job_id, "url": url, "state": state, "status": status,
                           "attempts": attempts}
    if result is not None:
        out["result"] = result
    if error is not None:
        out["error"] = error
    return out


def encode_body(request: Mapping[str, Any]) -> tuple[bytes, str | None]:
    """A stored request's body as the bytes sent, and its default Content-Type."""
    if "json" in request and request["json"] is not None:
        return (jsonlib.dumps(request["json"], ensure_ascii=False, separators=(",", ":"))
                .encode(), "application/json")
    if request.get("body_b64") is not None:
        import base64

        return base64.b64decode(request["body_b64"]), "application/octet-stream"
    if request.get("body") is not None:
        return str(request["body"]).encode(), "text/plain; charset=utf-8"
    return b"", None
