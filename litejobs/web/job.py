"""The job page ``/jobs/{id}``: arguments (masked per the task's ``redact``), result, every
attempt with its error and traceback, progress and metadata polled every 2 s while the job
has not ended, tags, its workflow's graph, retry and cancel, and why it is not running."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from litejobs.explain import explain
from litejobs.job import TERMINAL, Job, State
from litejobs.redact import mask, mask_args, masks
from litejobs.store.schema import TOKEN_TASK
from litejobs.web.graph import layout

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from litejobs.app import App
    from litejobs.web.context import Ui

__all__ = ["job_view", "routes"]

#: Steps of a run drawn as a graph; a bigger run is linked as a list instead.
GRAPH_STEPS = 300
#: Characters of an argument list or a result shown before "… (N characters in all)".
SHOWN = 20_000


def pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}\n… ({len(text):,} characters)"


def job_view(app: App, row: dict[str, Any]) -> dict[str, Any]:
    """What the job page shows of the job ``row`` (its live part included)."""
    job = Job(app, row)
    d = job.to_dict()
    known = masks(app, job.task)
    terminal = job.state in TERMINAL
    why = None
    if job.state is not State.RUNNING:
        # why it has not run (an ended job's line repeats the page, unless it continued)
        found = explain(app.store, job.id, app.config, set(app.tasks) or None)
        if found is not None and (not terminal or found.reason == "continued"):
            why = found.message
    run = graph = None
    size = 0
    if job.workflow is not None:
        run = app.store.run(job.workflow)
        steps, edges, size = app.store.workflow_graph(job.workflow, GRAPH_STEPS)
        graph = layout(steps, edges, job.id) if steps else None
    return {
        "job": d, "state": job.state.value, "terminal": terminal,
        "token": job.task == TOKEN_TASK,
        "unknown_task": known is None and job.task != TOKEN_TASK,
        "masked": sorted(known or ()),
        "args": pretty(mask_args(app, job.task, job.args)),
        "kwargs": pretty(mask(app, job.task, job.kwargs)),
        "has_args": bool(d["args"] or d["kwargs"]),
        "result": None if d["result"] is None else pretty(d["result"]),
        "metadata": pretty(d["metadata"]) if d["metadata"] else None,
        "progress": job.progress,
        "attempts": job.attempts(), "why": why, "run": run, "graph": graph,
        "graph_size": size, "row": row,
        "can_retry": job.state in (State.FAILED, State.CANCELLED) and job.task != TOKEN_TASK,
        "can_cancel": not terminal,
    }


def routes(ui: Ui) -> list[BaseRoute]:
    """``/jobs/{id}``, its live part, retry and cancel."""
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    app = ui.app

    def load(request: Request) -> dict[str, Any]:
        raw = request.path_params["job_id"]
        row = app.store.get_job(raw) if 0 < raw < 2**63 else None
        if row is None:
            raise HTTPException(404, f"no job with id {raw} (never enqueued, or pruned after "
                                     "its retention)")
        return row

    def page(request: Request, error: str | None = None) -> Response:
        return ui.render(request, "job.html", status_code=409 if error else 200,
                         error=error, **job_view(app, load(request)))

    def live(request: Request) -> Response:
        return ui.render(request, "_job_live.html", **job_view(app, load(request)))

    def retry(request: Request) -> Response:
        ui.check_write(request)
        job = Job(app, load(request))
        try:
            if not job.retry():
                return page(request, f"job {job.id} is {job.state.value}: only a failed or "
                                     "cancelled job can be retried")
        except ValueError as exc:
            return page(request, str(exc))
        return ui.redirect(request, f"/jobs/{job.id}")

    def cancel(request: Request) -> Response:
        ui.check_write(request)
        job = Job(app, load(request))
        if not job.cancel():
            return page(request, f"job {job.id} already ended {job.state.value}: nothing to "
                                 "cancel")
        return ui.redirect(request, f"/jobs/{job.id}")

    return [Route("/jobs/{job_id:int}", page, name="job"),
            Route("/jobs/{job_id:int}/live", live),
            Route("/jobs/{job_id:int}/retry", retry, methods=["POST"]),
            Route("/jobs/{job_id:int}/cancel", cancel, methods=["POST"])]
