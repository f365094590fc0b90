"""The cron page ``/cron``: each entry of the app and litejobs.toml with its schedule, zone,
next and last fires, and "trigger now" (what ``litejobs cron list`` / ``cron trigger`` do)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from litejobs.cron import CronEntry
from litejobs.schedules import known_entries

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from litejobs.web.context import Ui

__all__ = ["cron_rows", "routes"]


def cron_rows(ui: Ui) -> tuple[list[dict[str, Any]], str | None]:
    """Each entry with its stored state; or no rows and the problem of an invalid entry."""
    try:
        # stored entries too; a task this process lacks is the supervisor's to report
        entries = known_entries(ui.app, check_tasks=False)
    except ValueError as exc:
        return [], str(exc)
    stored = {r["name"]: r for r in ui.app.store.cron_entries()}
    # the instants to come on the store's clock: the one supervisors fire them by
    now = datetime.fromtimestamp(ui.now(), UTC)
    rows = []
    for e in entries:
        row = stored.get(e.name, {})
        rows.append({"name": e.name, "schedule": e.schedule.expression,
                     "timezone": e.schedule.timezone, "task": e.task, "source": e.source,
                     "kind": e.kind,
                     "queue": e.queue, "misfire": e.misfire, "overlap": e.overlap,
                     "next": [i.timestamp() for i in itertools.islice(
                         e.schedule.instants(now), 3)],
                     "last_fire": row.get("last_instant"), "last_job": row.get("last_job"),
                     "last_state": row.get("last_state")})
    return rows, None


def trigger(ui: Ui, entry: CronEntry) -> int:
    """Enqueue a run of ``entry`` now, outside its schedule; returns the job id."""
    options = {k: v for k, v in (("queue", entry.queue), ("priority", entry.priority))
               if v is not None}
    return ui.app.enqueue(entry.task, list(entry.args), dict(entry.kwargs), **options).id


def routes(ui: Ui) -> list[BaseRoute]:
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    def context(request: Request) -> dict[str, Any]:
        rows, problem = cron_rows(ui)
        triggered = request.query_params.get("triggered", "")
        return {"entries": rows, "problem": problem,
                "triggered": int(triggered) if triggered.isdigit() else None,
                "triggered_entry": request.query_params.get("entry")}

    def page(request: Request) -> Response:
        return ui.render(request, "cron.html", **context(request))

    def live(request: Request) -> Response:
        return ui.render(request, "cron_live.html", **context(request))

    def fire(request: Request) -> Response:
        ui.check_write(request)
        name = request.path_params["name"]
        try:
            entries = known_entries(ui.app, check_tasks=False)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        entry = next((e for e in entries if e.name == name), None)
        if entry is None:
            raise HTTPException(404, f"no cron entry named {name!r}")
        job_id = trigger(ui, entry)
        from urllib.parse import urlencode

        return ui.redirect(request, "/cron?" + urlencode({"triggered": job_id, "entry": name}))

    return [Route("/cron", page, name="cron"), Route("/live/cron", live),
            Route("/cron/{name:path}/trigger", fire, methods=["POST"])]
