"""The supervisors page ``/supervisors``: each supervisor (host, pid, started, heartbeat age,
queues) and its workers as its heartbeat last wrote them (pid, state, current job, task,
running for, memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from litejobs.web.context import Ui

__all__ = ["routes", "supervisor_rows"]

#: A heartbeat older than this is shown as late (the heartbeat runs every 5 s).
LATE = 15.0


def supervisor_rows(ui: Ui) -> list[dict[str, Any]]:
    store = ui.app.store
    now = ui.now()  # heartbeats and starts are on the store's clock
    workers: dict[str, list[dict[str, Any]]] = {}
    for w in store.workers():
        started = w["started_at"]
        workers.setdefault(w["supervisor"], []).append(
            {**w, "running_for": None if started is None else max(0.0, now - started)})
    rows = []
    for s in store.supervisors():
        mine = workers.get(s["id"], [])
        age = max(0.0, now - s["heartbeat_at"])
        rows.append({**s, "workers": mine, "age": age, "late": age > LATE,
                     "queues": s["queues"] or "all",
                     "busy": sum(1 for w in mine if w["state"] == "busy")})
    return rows


def routes(ui: Ui) -> list[BaseRoute]:
    from starlette.routing import Route

    def page(request: Request) -> Response:
        return ui.render(request, "supervisors.html", supervisors=supervisor_rows(ui))

    def live(request: Request) -> Response:
        return ui.render(request, "supervisors_live.html", supervisors=supervisor_rows(ui))

    return [Route("/supervisors", page, name="supervisors"),
            Route("/live/supervisors", live)]
