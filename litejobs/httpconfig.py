"""The ``[http]`` table of litejobs.toml: how ``litejobs.deliver`` jobs send requests.

Kept beside ``litejobs.config`` (which reads it with the other tables) so that module stays
one noun; nothing here imports httpx.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from litejobs.validate import parse_size

if TYPE_CHECKING:
    from litejobs.config import _Checker

__all__ = ["FOLLOW_REDIRECTS", "HttpConfig", "check_host_pattern", "parse_http"]

#: ``[http] follow_redirects``: "same-host" (the default) follows a redirect only to the host
#: the delivery was sent to; "any" follows it anywhere (still within ``allowed_hosts``);
#: "never" follows none (a 3xx is then the delivery's answer).
FOLLOW_REDIRECTS = ("same-host", "any", "never")


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The ``[http]`` table: how ``litejobs.deliver`` jobs send requests (see docs/http.md)."""

    #: Sign every delivery with it (``Litejobs-Signature``); ``LITEJOBS_SIGNING_SECRET`` wins.
    signing_secret: str | None = field(default=None, repr=False)
    #: None: any host; otherwise only these (``"*.example.com"``: its subdomains).
    allowed_hosts: tuple[str, ...] | None = None
    follow_redirects: str = "same-host"
    #: At most this much of a response body is read (the job's result keeps 64 KiB of it).
    max_response_bytes: int = 1024 * 1024
    #: Seconds a delivery waits (connect, each read) when ``app.deliver`` gives no timeout.
    timeout: float = 30.0


_HTTP_KEYS = {"signing_secret", "allowed_hosts", "follow_redirects", "max_response_bytes",
              "timeout"}


def check_host_pattern(value: object) -> str:
    """An ``allowed_hosts`` entry, lower-cased: a host name or address, or ``*.domain``."""
    if not isinstance(value, str) or not value or len(value) > 253:
        raise ValueError(f"each entry must be a host name such as 'api.example.com', "
                         f"not {value!r}")
    host = value.strip().lower()
    bare = host[2:] if host.startswith("*.") else host
    if not bare or not re.fullmatch(r"[a-z0-9._\-]+|\[[0-9a-f:.]+\]|[0-9a-f:.]+", bare) or (
            "*" in bare):
        raise ValueError(f"{value!r} is not a host name (no scheme, port or path: write "
                         "'api.example.com', or '*.example.com' for its subdomains)")
    return host


def parse_http(c: _Checker, value: object) -> HttpConfig:
    """The validated ``[http]`` table; errors name the file, line and key."""
    if not isinstance(value, dict):
        raise c.fail(None, "http", "must be a table: [http]")
    for key in value:
        if key not in _HTTP_KEYS:
            raise c.fail("http", key, f"unknown key; known: {', '.join(sorted(_HTTP_KEYS))}")
    out: dict[str, Any] = {}
    secret = value.get("signing_secret")
    if secret is not None:
        if not isinstance(secret, str) or not secret:
            raise c.fail("http", "signing_secret", "must be a non-empty string (or set "
                         "LITEJOBS_SIGNING_SECRET instead of writing it in the file)")
        out["signing_secret"] = secret
    hosts = value.get("allowed_hosts")
    if hosts is not None:
        if not isinstance(hosts, list):
            raise c.fail("http", "allowed_hosts",
                         'must be an array, e.g. allowed_hosts = ["api.example.com"]')
        try:
            out["allowed_hosts"] = tuple(check_host_pattern(h) for h in hosts)
        except ValueError as exc:
            raise c.fail("http", "allowed_hosts", str(exc)) from None
    follow = value.get("follow_redirects")
    if follow is not None:
        if follow not in FOLLOW_REDIRECTS:
            raise c.fail("http", "follow_redirects", f"must be one of "
                         f"{', '.join(repr(f) for f in FOLLOW_REDIRECTS)}, not {follow!r}")
        out["follow_redirects"] = follow
    if "max_response_bytes" in value:
        try:
            size = parse_size(value["max_response_bytes"], "max_response_bytes")
        except ValueError as exc:
            raise c.fail("http", "max_response_bytes", str(exc)) from None
        if size < 1:
            raise c.fail("http", "max_response_bytes", "must be at least 1 byte")
        out["max_response_bytes"] = size
    if "timeout" in value:
        out["timeout"] = c.number("http", "timeout", value["timeout"])
    return HttpConfig(**out)
