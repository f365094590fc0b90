"""The dashboard (extra ``web``): ``asgi(app)`` is an ASGI app to serve or mount.

``litejobs serve`` runs it under uvicorn; ``litejobs run --serve ADDR`` runs that as a child
of the supervisor; ``asgi(app)`` mounts it in an existing ASGI app (FastAPI, Starlette) or,
through a2wsgi, under WSGI. Pages are rendered on the server (Jinja2); their live parts are
htmx fragments polled every 2 s. Nothing here is imported by ``import litejobs``.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from litejobs.app import App
from litejobs.errors import ConfigError

if TYPE_CHECKING:
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp

    from litejobs.web.context import Ui

__all__ = ["WEB_EXTRA", "asgi", "need_web"]

WEB_EXTRA = "pip install 'litejobs[web]'"


def need_web(*modules: str) -> None:
    """Raise one line naming what to install when the ``web`` extra is missing."""
    for name in modules or ("starlette", "jinja2"):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ConfigError(f"the dashboard needs the 'web' extra ({name} is not "
                              f"installed): {WEB_EXTRA}")


def asgi(app: App, read_only: bool = False, base_path: str = "", api: bool = False,
         ) -> ASGIApp:
    """The dashboard of ``app`` as an ASGI app (Starlette).

    ``read_only`` hides and refuses every action. ``api`` adds the HTTP API under
    ``/api/v1`` (``litejobs.web.api``; its bearer tokens from ``LITEJOBS_API_TOKEN``, a
    ConfigError when none is set). ``base_path`` (``/jobs``) is where the
    pages live when a proxy passes that prefix on; a mount (``Mount("/jobs", asgi(app))``)
    needs none. ``LITEJOBS_WEB_PASSWORD`` / ``LITEJOBS_WEB_TOKEN``, when set, are required on
    every request; every state-changing request needs the page's CSRF token.
    """
    need_web()
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from litejobs.web import cron, overview, queues, supervisors
    from litejobs.web.context import HERE, Ui
    from litejobs.web.security import Credentials, SecurityMiddleware

    ui = Ui(app, read_only=read_only, base_path=base_path)
    routes: list[BaseRoute] = []
    routes += overview.routes(ui)
    jobs = _optional("litejobs.web.jobs")  # the jobs pages, when installed
    if jobs is not None:
        routes += jobs.routes(ui)
        ui.nav.insert(1, ("Jobs", "/jobs"))
    routes += queues.routes(ui) + cron.routes(ui) + supervisors.routes(ui)
    routes += _probes(ui)
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    api_prefix = None
    if api:
        from litejobs.web.api import PREFIX, api_tokens, mount

        routes.append(Mount(PREFIX, app=mount(ui, api_tokens())))
        api_prefix = PREFIX
    if ui.base_path:
        routes = [Mount(ui.base_path, routes=routes)]
    web = Starlette(routes=routes)
    web.state.ui = ui
    return SecurityMiddleware(web, ui, Credentials.from_env(), api_prefix)


def _optional(module: str) -> Any:
    """``module``, or None when it does not exist (an error inside it still raises)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None


def _probes(ui: Ui) -> list[BaseRoute]:
    """``/metrics`` and ``/healthz`` from litejobs.metrics and litejobs.health."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    app = ui.app
    out: list[BaseRoute] = []
    metrics = _optional("litejobs.metrics")
    if metrics is not None:
        def metrics_page(request: Request) -> Response:
            body, content_type = metrics.render(app)
            return Response(body, media_type=content_type)

        out.append(Route("/metrics", metrics_page))
    health = _optional("litejobs.health")
    if health is not None:
        def healthz(request: Request) -> Response:
            result = health.check(app)
            return JSONResponse(result.to_dict(), status_code=200 if result.ok else 503)

        out.append(Route("/healthz", healthz))
    return out
