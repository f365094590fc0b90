"""The queues page ``/queues``: each queue's limits, depth by state, paused or not, and the
pause and resume actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litejobs.validate import check_name
from litejobs.web.overview import STATES, by_queue

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from litejobs.web.context import Ui

__all__ = ["queue_rows", "routes"]


def queue_rows(ui: Ui) -> list[dict[str, Any]]:
    """Every queue a job, the config, a task or a pause has named, with its figures."""
    app = ui.app
    counts = by_queue(app.store)
    ready = app.store.oldest_ready(ui.now())
    paused = dict(app.store.queue_list())
    configured = app.config.queues
    names = (set(counts) | set(paused) | set(configured)
             | {t.defaults.queue for t in app.tasks.values()})
    rows = []
    for name in sorted(names):
        limits = configured.get(name)
        c = counts.get(name, {})
        rows.append({"name": name, "paused": paused.get(name, False),
                     "concurrency": limits.concurrency if limits else None,
                     "rate_limit": limits.rate_limit if limits else None,
                     "counts": c, "depth": c.get("queued", 0), "oldest_age": ready.get(name)})
    return rows


def routes(ui: Ui) -> list[BaseRoute]:
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    states = [s.value for s in STATES]

    def page(request: Request) -> Response:
        return ui.render(request, "queues.html", queues=queue_rows(ui), states=states)

    def live(request: Request) -> Response:
        return ui.render(request, "queues_live.html", queues=queue_rows(ui), states=states)

    def action(request: Request, pause: bool) -> Response:
        ui.check_write(request)
        name = request.path_params["name"]
        try:
            check_name("queue", name)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        if pause:
            ui.app.pause_queue(name)
        else:
            ui.app.resume_queue(name)
        return ui.redirect(request, "/queues")

    def pause(request: Request) -> Response:
        return action(request, True)

    def resume(request: Request) -> Response:
        return action(request, False)

    # {name:path}: a queue name may hold a slash
    return [Route("/queues", page, name="queues"), Route("/live/queues", live),
            Route("/queues/{name:path}/pause", pause, methods=["POST"]),
            Route("/queues/{name:path}/resume", resume, methods=["POST"])]
