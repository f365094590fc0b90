"""The overview page ``/``: jobs by state and queue, throughput and failures of the last hour
and day, queue depth and the age of each queue's oldest ready job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litejobs.job import State
from litejobs.store import Store
from litejobs.web.charts import outcome_chart

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from litejobs.web.context import Ui

__all__ = ["by_queue", "overview_data", "routes"]

#: States in the order an operator reads them: what is coming, what runs, how it ended.
STATES = [State.WAITING, State.SCHEDULED, State.QUEUED, State.RUNNING, State.SUCCEEDED,
          State.FAILED, State.CANCELLED]


def by_queue(store: Store) -> dict[str, dict[str, int]]:
    """``{queue: {state: count}}`` of every queue with jobs (absent states: none)."""
    out: dict[str, dict[str, int]] = {}
    for (queue, state), n in store.job_counts().items():
        out.setdefault(queue, {})[state] = n
    return out


def overview_data(ui: Ui) -> dict[str, Any]:
    """Everything the overview shows, read now."""
    store = ui.app.store
    now = ui.now()  # outcome minutes are on the store's clock
    counts = by_queue(store)
    ready = store.oldest_ready(now)
    paused = dict(store.queue_list())
    totals = {s.value: sum(c.get(s.value, 0) for c in counts.values()) for s in STATES}
    queues = []
    for name in sorted(set(counts) | {q for q, p in paused.items() if p}):
        c = counts.get(name, {})
        queues.append({"name": name, "counts": c, "depth": c.get("queued", 0),
                       "paused": paused.get(name), "oldest_age": ready.get(name)})
    minutes = store.outcome_minutes(now - 86400)
    charts = [outcome_chart("Last hour", minutes, now, 60, 1, "60 min ago"),
              outcome_chart("Last 24 hours", minutes, now, 24, 60, "24 h ago")]
    supervisors = store.supervisors()
    return {"states": [s.value for s in STATES], "totals": totals, "queues": queues,
            "charts": charts, "supervisors": len(supervisors),
            "newest_heartbeat": max((s["heartbeat_at"] for s in supervisors), default=None)}


def routes(ui: Ui) -> list[BaseRoute]:
    from starlette.routing import Route

    def page(request: Request) -> Response:
        return ui.render(request, "overview.html", **overview_data(ui))

    def live(request: Request) -> Response:
        return ui.render(request, "overview_live.html", **overview_data(ui))

    return [Route("/", page, name="overview"), Route("/live/overview", live)]
