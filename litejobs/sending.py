"""Sending a delivery, in the worker: one attempt of a ``litejobs.deliver`` job.

httpx is imported here, when a delivery runs (the ``http`` extra). Redirects are followed by
hand, so each hop is checked against ``[http] follow_redirects`` and ``allowed_hosts``; the
response body is read up to ``max_response_bytes`` and at most 64 KiB of it is kept.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import time
from typing import TYPE_CHECKING, Any

from litejobs import signing
from litejobs.deliver import (
    HTTP_EXTRA,
    TASK,
    DeliveryFailed,
    DeliveryRetry,
    encode_body,
    host_allowed,
    http_settings,
    summary,
)
from litejobs.jobcontext import current

if TYPE_CHECKING:
    import httpx

    from litejobs.app import App
    from litejobs.httpconfig import HttpConfig

__all__ = ["KEEP_BODY", "parse_retry_after", "run_delivery"]

#: How much of a response body the job's result keeps.
KEEP_BODY = 64 * 1024
MAX_REDIRECTS = 10
#: The longest ``Retry-After`` obeyed: a receiver asking for more gets a day.
MAX_RETRY_AFTER = 86400.0
_VERSION = "0.1.0"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` a ``Retry-After`` value asks for (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


def _kept_body(data: bytes) -> dict[str, Any]:
    """The body as the result keeps it: text, or base64 (flagged) when not UTF-8."""
    kept = data[:KEEP_BODY]
    out: dict[str, Any] = {}
    try:
        out["body"] = kept.decode("utf-8")
    except UnicodeDecodeError as exc:
        # the 64 KiB cut may split a character: text up to it is still text
        if len(data) > KEEP_BODY and exc.start >= len(kept) - 3 and exc.end == len(kept):
            try:
                out["body"] = kept[:exc.start].decode("utf-8")
            except UnicodeDecodeError:
                pass
    if "body" not in out:
        out["body"] = base64.b64encode(kept).decode("ascii")
        out["body_base64"] = True
    if len(data) > KEEP_BODY:
        out["truncated"] = True
    return out


def _read(response: httpx.Response, limit: int, deadline: float) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body (and whether there was more), by ``deadline``."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            return b"".join(chunks)[:limit], True
        if time.monotonic() > deadline:
            raise DeliveryRetry(f"the response body took longer than the deadline "
                                f"({response.request.url})")
    return b"".join(chunks), False


_clients: list[httpx.Client] = []


def _client(httpx: Any) -> httpx.Client:
    """This worker's client, made once: making one costs ~25 ms (its TLS context), and its
    pool keeps connections to a receiver alive between deliveries. Environment proxies and
    .netrc are not used (``trust_env=False``): a delivery sends what its job says."""
    if not _clients:
        _clients.append(httpx.Client(follow_redirects=False, trust_env=False))
    return _clients[0]


def _send(settings: HttpConfig, url: str, method: str, headers: dict[str, str], content: bytes,
          timeout: float) -> tuple[httpx.Response, bytes, bool]:
    try:
        import httpx
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == "httpx":
            raise DeliveryFailed(f"this worker has no httpx to deliver with: {HTTP_EXTRA} "
                                 "(where `litejobs run` runs), then retry the job") from None
        raise DeliveryFailed(f"httpx cannot be imported in this worker: {exc} (a module of "
                             "yours shadowing one it needs?)") from None
    deadline = time.monotonic() + timeout * 2
    client = _client(httpx)
    client.cookies.clear()  # no cookie of an earlier delivery (another job's) goes along
    request = client.build_request(method, url, headers=headers, content=content,
                                   timeout=timeout)
    origin = request.url.host
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            response = client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise DeliveryRetry(f"timed out after {timeout:g} s ({type(exc).__name__}) "
                                f"sending to {request.url}") from None
        except httpx.TransportError as exc:
            raise DeliveryRetry(f"could not deliver to {request.url}: "
                                f"{type(exc).__name__}: {exc}") from None
        try:
            nxt = response.next_request if response.is_redirect else None
            if nxt is None or settings.follow_redirects == "never":
                try:
                    data, more = _read(response, settings.max_response_bytes, deadline)
                except httpx.TimeoutException:
                    raise DeliveryRetry(f"timed out reading the response of {request.url}"
                                        ) from None
                except httpx.TransportError as exc:
                    raise DeliveryRetry(f"the response of {request.url} broke off: "
                                        f"{type(exc).__name__}: {exc}") from None
                return response, data, more
            target = nxt.url.host
            if settings.follow_redirects == "same-host" and target != origin:
                raise DeliveryFailed(
                    f"{request.url} answered {response.status_code}, a redirect to "
                    f"another host ({nxt.url}); not followed ([http] follow_redirects = "
                    "\"same-host\"): deliver to the final URL, or set it to \"any\"")
            if not host_allowed(target, settings.allowed_hosts):
                raise DeliveryFailed(f"{request.url} redirects to {nxt.url}, whose host "
                                     "is not in [http] allowed_hosts; not followed")
            request = nxt
        finally:
            response.close()
    raise DeliveryFailed(f"more than {MAX_REDIRECTS} redirects from {url}; not followed")


def run_delivery(app: App, url: str, method: str, headers: dict[str, str], json: Any,
                 body: str | None, body_b64: str | None, timeout: float | None,
                 callback: str | None, failure_callback: str | None) -> dict[str, Any]:
    """One attempt of a delivery: the job's result, or DeliveryRetry / DeliveryFailed."""
    ctx = current.get()
    job_id = ctx.id if ctx is not None else 0
    attempt = ctx.attempt if ctx is not None else 1
    last = ctx is None or attempt >= ctx.max_attempts
    try:
        settings = http_settings(app)
        result = _attempt(settings, url, method, headers, json, body, body_b64, timeout,
                          job_id, attempt)
    except (DeliveryFailed, DeliveryRetry) as exc:
        final = isinstance(exc, DeliveryFailed) or last
        if final and failure_callback is not None and ctx is not None:
            _callback(app, failure_callback, summary(job_id, url, attempt, "failed", None,
                                                     f"{type(exc).__name__}: {exc}",
                                                     exc.status),
                      f"{job_id}:failure:{attempt}", timeout)
        raise
    if callback is not None and ctx is not None:
        _callback(app, callback, summary(job_id, url, attempt, "succeeded", result, None),
                  f"{job_id}:callback", timeout)
    return result


def _attempt(settings: HttpConfig, url: str, method: str, headers: dict[str, str], json: Any,
             body: str | None, body_b64: str | None, timeout: float | None, job_id: int,
             attempt: int) -> dict[str, Any]:
    from urllib.parse import urlsplit

    if not host_allowed(urlsplit(url).hostname or "", settings.allowed_hosts):
        raise DeliveryFailed(f"{url}: its host is not in [http] allowed_hosts (checked again "
                             "in the worker); add it there, then retry the job")
    content, content_type = encode_body({"json": json, "body": body, "body_b64": body_b64})
    sent = dict(headers)
    lower = {name.lower() for name in sent}
    if content_type is not None and "content-type" not in lower:
        sent["Content-Type"] = content_type
    if "user-agent" not in lower:
        sent["User-Agent"] = f"litejobs/{_VERSION}"
    sent["Litejobs-Job-Id"] = str(job_id)
    sent["Litejobs-Attempt"] = str(attempt)
    if settings.signing_secret:
        sent[signing.HEADER] = signing.signature_header(settings.signing_secret, content)
    wait = settings.timeout if timeout is None else timeout
    response, data, more = _send(settings, url, method, sent, content, wait)
    status = response.status_code
    if 200 <= status < 300:
        result: dict[str, Any] = {"status": status, "headers": _headers(response)}
        result.update(_kept_body(data))
        if more and "truncated" not in result:
            result["truncated"] = True
        return result
    snippet = data[:200].decode("utf-8", "replace").replace("\n", " ")
    said = f"{url} answered {status} {response.reason_phrase}" + (
        f": {snippet}" if snippet else "")
    if status in (408, 429) or status >= 500:
        raise DeliveryRetry(said, parse_retry_after(response.headers.get("retry-after"),
                                                    time.time()), status)
    if 300 <= status < 400:
        raise DeliveryFailed(f"{said} (a redirect, not followed: [http] follow_redirects = "
                             "\"never\")", status)
    raise DeliveryFailed(f"{said} (not retried: fix the request, then retry the job)", status)


def _headers(response: httpx.Response) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        name = name.lower()
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _callback(app: App, url: str, payload: dict[str, Any], key: str,
              timeout: float | None) -> None:
    """Enqueue the callback's own delivery (retried like any), once per key: a rerun of the
    attempt that enqueued it (a crash before its outcome was recorded) finds it there.

    A callback that cannot be enqueued is logged, not raised: the delivery itself is done,
    and failing it would send the request again."""
    from litejobs.deliver import deliver

    try:
        try:
            deliver(app, url, json=payload, timeout=timeout, key=f"{TASK}:{key}")
        except ValueError:  # over max_payload with the response: the summary goes without it
            payload = {k: v for k, v in payload.items() if k != "result"}
            deliver(app, url, json=payload, timeout=timeout, key=f"{TASK}:{key}")
    except Exception as exc:
        logging.getLogger("litejobs.deliver").error(
            "the callback of delivery %s to %s was not enqueued: %s: %s", payload.get("job"),
            url, type(exc).__name__, exc)
