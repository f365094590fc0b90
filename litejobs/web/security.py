"""The dashboard's guards: credentials, CSRF, read-only, security headers, the bind rule.

Closed by default (Mission Control's rule): it binds to loopback, and any other address is
refused unless ``LITEJOBS_WEB_PASSWORD`` (HTTP basic auth, user ``litejobs``) or
``LITEJOBS_WEB_TOKEN`` (``Authorization: Bearer``; a browser may give it as the basic-auth
password) is set; once one is set, every request needs it, on loopback too. Every
state-changing request needs the CSRF token, in the ``X-CSRF-Token`` header (htmx sends it
for every request of a page) or a form's ``csrf`` field. Nothing about a request but its
method and path is logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from litejobs.errors import ConfigError
from litejobs.web.context import CSRF_OK, Ui

__all__ = ["Credentials", "LoopbackHostOnly", "SecurityMiddleware", "check_bind",
           "is_loopback", "parse_bind"]

log = logging.getLogger("litejobs.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_PORT = 8077
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: A form larger than this is no dashboard action.
MAX_FORM = 64 * 1024
# htmx needs no eval (htmx-config allowEval false) and no inline style (includeIndicatorStyles
# false); SVG charts use attributes, which CSP does not govern.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
       "object-src 'none'")
HEADERS = [(b"x-frame-options", b"DENY"), (b"content-security-policy", CSP.encode()),
           (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request must carry: from ``LITEJOBS_WEB_PASSWORD`` / ``LITEJOBS_WEB_TOKEN``."""

    password: str | None = None
    token: str | None = None

    @classmethod
    def from_env(cls, env: MutableMapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        return cls(env.get("LITEJOBS_WEB_PASSWORD") or None,
                   env.get("LITEJOBS_WEB_TOKEN") or None)

    @property
    def required(self) -> bool:
        return self.password is not None or self.token is not None

    def accepts(self, authorization: str | None) -> bool:
        """Does an ``Authorization`` header carry the password or the token?"""
        if not authorization:
            return False
        kind, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if kind.lower() == "bearer":
            return self.token is not None and _same(value, self.token)
        if kind.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        # both compared whatever the first gives: the time taken tells nothing
        by_password = self.password is not None and _same(password, self.password)
        by_token = self.token is not None and _same(password, self.token)
        return _same(user, "litejobs") and (by_password or by_token)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def parse_bind(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``127.0.0.1:8077``, ``[::1]:8077``, ``:8077`` or a host alone."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--bind {text!r}: the port must be a number from 0 to 65535; "
                          "write e.g. 127.0.0.1:8077") from None
    return host or "127.0.0.1", port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_bind(host: str, credentials: Credentials) -> None:
    """Refuse a non-loopback address unless credentials are set (``ConfigError``)."""
    if not is_loopback(host) and not credentials.required:
        raise ConfigError(
            f"refusing to serve the dashboard on {host}, which is not loopback, without "
            "credentials: set LITEJOBS_WEB_PASSWORD (basic auth, user litejobs) or "
            "LITEJOBS_WEB_TOKEN (bearer), or bind to 127.0.0.1")


class SecurityMiddleware:
    """Credentials, then read-only and CSRF for state-changing methods, then security
    headers on every response (and ``Cache-Control: no-store`` except on static files).

    Below ``api_prefix`` (the HTTP API, when mounted) the API's own guard checks its bearer
    token and read-only mode instead: a bearer token is never sent by a browser on its own,
    so no CSRF token is needed, and the dashboard's password would take the one
    Authorization header the API token needs."""

    def __init__(self, app: ASGIApp, ui: Ui, credentials: Credentials,
                 api_prefix: str | None = None) -> None:
        self.app = app
        self.ui = ui
        self.credentials = credentials
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        path = _route_path(scope, self.ui.base_path)
        static = path.startswith("/static/")

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(HEADERS)
                if not static:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
                if scope["method"] not in SAFE_METHODS:
                    # method and path only: a path holds a queue, entry or job id, no values
                    log.info("%s %s -> %s", scope["method"], path, message["status"])
            await send(message)

        if self.api_prefix is not None and path.startswith(self.api_prefix + "/"):
            await self.app(scope, receive, send_secured)
            return
        if self.credentials.required and not self.credentials.accepts(
                headers.get("authorization")):
            await _plain(send_secured, 401, "authentication required: give the dashboard's "
                         "password (user litejobs) or its token",
                         [(b"www-authenticate", b'Basic realm="litejobs", charset="UTF-8"')])
            return
        if scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send_secured)
            return
        if self.ui.read_only and path not in self.ui.read_posts:
            await _plain(send_secured, 403, "the dashboard is read-only (--read-only): no "
                         "actions")
            return
        token = headers.get("x-csrf-token")
        body = b""
        if token is None and headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            body, whole = await _read_body(receive)
            if not whole:
                await _plain(send_secured, 413, "form too large")
                return
            fields = parse_qs(body.decode("latin-1")).get("csrf")
            token = fields[0] if fields else None
            receive = _replay(body, receive)
        if not self.ui.csrf_valid(token):
            await _plain(send_secured, 403, "missing or wrong CSRF token: reload the page and "
                         "try again (a request from another site is refused)")
            return
        scope[CSRF_OK] = True
        await self.app(scope, receive, send_secured)


class LoopbackHostOnly:
    """Refuse a request whose ``Host`` is not a loopback name (403): what ``serve`` adds on a
    loopback address without credentials. A page on another site can point a name of its
    own at 127.0.0.1 (DNS rebinding) and then read the dashboard, its CSRF token included, as
    its own origin; its requests still say that name in ``Host``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = ""
            for key, value in scope.get("headers", []):
                if key.lower() == b"host":
                    host = value.decode("latin-1")
            name = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
            if not is_loopback(name):
                await _plain(send, 403, f"refused: Host {host!r} is not this machine's loopback "
                             "address (set LITEJOBS_WEB_PASSWORD or LITEJOBS_WEB_TOKEN to serve "
                             "other names, e.g. behind a proxy that passes its own Host)")
                return
        await self.app(scope, receive, send)


def _route_path(scope: Scope, base_path: str) -> str:
    """The request's path below a mount's root path and the base path."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", "")).rstrip("/")
    if root and path.startswith(root):
        path = path[len(root):]
    if base_path and (path == base_path or path.startswith(base_path + "/")):
        path = path[len(base_path):]
    return path or "/"


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body; False when it passed MAX_FORM (reading stopped there)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > MAX_FORM:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), True


def _replay(body: bytes, server: Receive) -> Receive:
    """A ``receive`` that gives the already-read body once, then is the server's."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await server()

    return receive


async def _plain(send: Send, status: int, text: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
