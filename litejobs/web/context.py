"""``Ui``: what every dashboard page needs, passed to each page module's ``routes(ui)``.

It holds the App, the read-only flag, the base path, the templates and the CSRF token, and
renders a page with all of them (``ui.render``). An action's handler calls
``ui.check_write(request)`` first; the security middleware has refused a request without the
token before any handler runs, so this second check guards against a route that forgot.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litejobs.app import App

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["HERE", "Ui"]

HERE = Path(__file__).resolve().parent
#: The pages of the navigation bar: (label, path). The jobs pages are added when present.
PAGES = [("Overview", "/"), ("Queues", "/queues"), ("Cron", "/cron"),
         ("Supervisors", "/supervisors")]
#: Scope key the security middleware sets once a request's CSRF token checked out.
CSRF_OK = "litejobs.csrf_ok"


class Ui:
    """The dashboard's context: ``app``, ``read_only``, ``base_path``, the templates.

    ``LITEJOBS_WEB_SECRET`` makes the CSRF token the same in every process that serves the
    dashboard (several web workers behind one address); without it each process draws its own.
    """

    def __init__(self, app: App, read_only: bool = False, base_path: str = "") -> None:
        from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
        from starlette.templating import Jinja2Templates

        self.app = app
        self.read_only = read_only
        self.base_path = clean_base_path(base_path)
        secret = os.environ.get("LITEJOBS_WEB_SECRET", "").encode() or secrets.token_bytes(32)
        self.csrf_token = hmac.new(secret, b"litejobs csrf", hashlib.sha256).hexdigest()
        env = Environment(loader=FileSystemLoader(HERE / "templates"),
                          autoescape=select_autoescape(default=True, default_for_string=True))
        # ago measures from the page's now (the store's clock)
        env.filters.update(ago=pass_context(lambda ctx, ts: ago(ts, ctx.get("now"))),
                           duration=duration, size=size, when=when, number=number)
        self.templates = Jinja2Templates(env=env)
        self.nav: list[tuple[str, str]] = list(PAGES)
        #: Paths (below the base path) whose POST only reads, e.g. a text search kept out of
        #: the URL: allowed in read-only mode (still with the CSRF token).
        self.read_posts: set[str] = set()

    def prefix(self, request: Request) -> str:
        """Where the dashboard's paths start for this request: a mount's root path and the
        base path (``""`` at the root)."""
        return str(request.scope.get("root_path", "")).rstrip("/")

    def url(self, request: Request, path: str) -> str:
        """``path`` (``/queues``) as a link for this request."""
        return self.prefix(request) + path

    def render(self, request: Request, template_name: str, status_code: int = 200,
               **context: Any) -> Response:
        """The template with ``context`` and what every page uses: ``base_path`` (put it
        before every link), ``csrf_token``, ``read_only``, ``nav``, ``now``."""
        prefix = self.prefix(request)
        here = request.url.path[len(prefix):] or "/"
        nav = [{"label": label, "href": prefix + path,
                "active": here == path or (path != "/" and here.startswith(path + "/"))}
               for label, path in self.nav]
        return self.templates.TemplateResponse(
            request, template_name,
            {"base_path": prefix, "csrf_token": self.csrf_token, "read_only": self.read_only,
             "nav": nav, "now": self.now(), "ui": self, **context},
            status_code=status_code)

    def now(self) -> float:
        """This host's clock on the store's (on PostgreSQL the server's, which every stored
        time is on): what a page measures stored times against."""
        return time.time() + self.app.store.clock_offset()

    def check_write(self, request: Request) -> None:
        """Refuse (HTTP 403) an action in read-only mode or without a valid CSRF token."""
        from starlette.exceptions import HTTPException

        if self.read_only:
            raise HTTPException(403, "the dashboard is read-only (--read-only): no actions")
        if not request.scope.get(CSRF_OK):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try "
                                     "again")

    def csrf_valid(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(),
                                                         self.csrf_token.encode())

    def redirect(self, request: Request, path: str) -> Response:
        """See Other to ``path`` (after a form's POST: a reload does not repeat it)."""
        from starlette.responses import RedirectResponse

        return RedirectResponse(self.url(request, path), status_code=303)


def clean_base_path(path: str) -> str:
    """``"/jobs"`` from ``"jobs/"``, ``"/jobs"`` or ``"/jobs/"``; ``""`` for the root."""
    path = (path or "").strip().strip("/")
    if not path:
        return ""
    if any(c in path for c in "?#\\ ") or ".." in path.split("/"):
        raise ValueError(f"--base-path {path!r} is not a URL path; write e.g. /jobs")
    return "/" + path


# --- filters every template may use ----------------------------------------------------------


def duration(seconds: float | None) -> str:
    """``0.35 s``, ``12 s``, ``4 min 05 s``, ``3 h 02 min``, ``2 d 04 h``."""
    if seconds is None:
        return "—"
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.2f} s" if s < 1 else f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m:02d} min"
    d, h = divmod(h, 24)
    return f"{d} d {h:02d} h"


def ago(ts: float | None, now: float | None = None) -> str:
    """How long ago a stored time was: ``12 s ago`` (``in 3 s`` for a future one)."""
    if ts is None:
        return "—"
    delta = (time.time() if now is None else now) - float(ts)
    return f"in {duration(-delta)}" if delta < 0 else f"{duration(delta)} ago"


def when(ts: float | None) -> str:
    """A stored time as UTC ``2026-12-05 02:10:07``."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S")


def size(n: int | None) -> str:
    """Bytes as ``512 KB``, ``38.2 MB``."""
    if not n:
        return "—"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def number(n: float | None) -> str:
    """``1,234,567``."""
    return "—" if n is None else f"{int(n):,}"
