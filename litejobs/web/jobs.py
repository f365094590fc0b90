"""The jobs pages: ``/jobs`` (a filter, keyset pages newest first, bulk retry / cancel /
delete of the selection or of everything matching, after a confirmation) and ``/jobs/{id}``
(see ``litejobs.web.job``).

Every action is a POST with the page's CSRF token and goes through ``ui.check_write``. A bulk
action on everything matching touches only the jobs that existed when it was confirmed (ids
up to the top id the confirmation page read) and still match then, in batches of a thousand,
each its own short write transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from litejobs.job import TERMINAL, State, sources
from litejobs.store.views import PAGE_SCAN, JobFilter, JobPage
from litejobs.web.jobfilters import FilterForm, Searches, parse_form

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from litejobs.app import App
    from litejobs.web.context import Ui

__all__ = ["ACTIONS", "Action", "bulk_all", "bulk_ids", "routes"]

#: Jobs a page shows.
PAGE_SIZE = 50
#: Ids one write transaction of a bulk action takes.
BATCH = 1000
#: Rows a page looks at, at most (the store's bound; see litejobs.store.views).
SCAN = PAGE_SCAN
#: The largest form an action takes (a page of ids is well under it).
MAX_FORM = 256 * 1024
#: A count stops here ("more than 10,000").
COUNT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class Action:
    """A bulk action: the states it applies to, what it does to a batch of ids."""

    verb: str  # retry, cancel, delete
    done: str  # retried, cancelled, deleted
    states: tuple[str, ...]
    bell: bytes | None

    def act(self, app: App, ids: Sequence[int], now: float,
            blocked: list[tuple[int, int | None, str]]) -> int:
        store = app.store
        if self.verb == "retry":
            stuck: list[tuple[int, int | None, str]] = []
            n = store.retry_many(ids, 0, now, stuck)
            blocked.extend(stuck)
            return n
        if self.verb == "cancel":
            return store.cancel_many(ids, "cancelled", now)
        return store.purge(ids)


ACTIONS = {a.verb: a for a in (
    Action("retry", "retried", tuple(s.value for s in sources(State.QUEUED)
                                     if s in TERMINAL), b"e"),
    Action("cancel", "cancelled", tuple(s.value for s in sources(State.CANCELLED)), b"c"),
    Action("delete", "deleted", tuple(s.value for s in State if s in TERMINAL), None),
)}


def bulk_ids(app: App, action: Action, ids: Sequence[int]) -> tuple[int, int]:
    """Do ``action`` to the jobs ``ids`` (those in another state are left as they are);
    returns (done, skipped workflow steps or tokens)."""
    now = time.time()
    done = 0
    blocked: list[tuple[int, int | None, str]] = []
    for i in range(0, len(ids), BATCH):
        done += action.act(app, ids[i:i + BATCH], now, blocked)
    if action.bell is not None and done:
        app.ring(action.bell)
    return done, len(blocked)


def bulk_all(app: App, action: Action, f: JobFilter, upto: int) -> tuple[int, int]:
    """Do ``action`` to every job matching ``f`` with an id up to ``upto`` (the top id when
    it was confirmed), a batch at a time; returns (done, skipped)."""
    narrowed = f.narrowed(action.states)
    if not narrowed.states:
        return 0, 0
    now = time.time()
    done = 0
    blocked: list[tuple[int, int | None, str]] = []
    after = 0
    while True:
        ids = app.store.ids_for(narrowed, after, upto, BATCH)
        if not ids:
            break
        done += action.act(app, ids, now, blocked)
        after = ids[-1]
    if action.bell is not None and done:
        app.ring(action.bell)
    return done, len(blocked)


def row_view(row: dict[str, Any]) -> dict[str, Any]:
    """A job of the list as the template shows it."""
    state = row["state"]
    when: tuple[str, float | None]
    if state in ("succeeded", "failed", "cancelled"):
        when = ("finished", row["finished_at"])
    elif state == "running":
        when = ("started", row["started_at"])
    elif state == "waiting":
        when = ("waiting", None)
    else:
        when = ("due", row["run_at"])
    return {**row, "when": when, "tags": json.loads(row["tags"]) if row["tags"] else [],
            "error": (row["error"] or "").splitlines()[0][:120] if row["error"] else ""}


async def form_body(request: Request) -> dict[str, list[str]]:
    """A urlencoded form's fields (what the pages' forms post), each name's values."""
    from starlette.exceptions import HTTPException

    body = await request.body()
    if len(body) > MAX_FORM:
        raise HTTPException(413, f"a form of {len(body):,} bytes: select fewer jobs (at most "
                                 "a page), or act on all matching")
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def routes(ui: Ui) -> list[BaseRoute]:
    """The routes of the jobs pages, mounted by ``litejobs.web.asgi``."""
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route

    from litejobs.web import job

    app = ui.app
    searches = Searches()
    ui.read_posts.add("/jobs/search")

    def form_of(request: Request) -> tuple[FilterForm | None, str | None]:
        params = {k: request.query_params.getlist(k) for k in request.query_params}
        try:
            # "since 2h" is measured back from the store's clock, as created_at is
            return parse_form(params, searches, now=ui.now()), None
        except ValueError as exc:
            return None, str(exc)

    def before_of(request: Request) -> int | None:
        raw = request.query_params.get("before", "")
        return int(raw) if raw.isdigit() and 0 < int(raw) < 2**63 else None

    def show(request: Request, form: FilterForm | None, error: str | None,
             page: JobPage | None = None, message: str | None = None,
             before: int | None = None) -> Response:
        return ui.render(
            request, "jobs.html", status_code=400 if error else 200, form=form, error=error,
            page=page, rows=[row_view(r) for r in page.rows] if page else [],
            states=[s.value for s in State], queues=[q for q, _ in app.store.queue_list()],
            tasks=sorted(app.tasks), message=message, actions=ACTIONS, before=before)

    def listing(request: Request) -> Response:
        form, error = form_of(request)
        page = None
        before = before_of(request)
        if form is not None:
            page = app.store.job_page(form.filter, before, PAGE_SIZE, SCAN)
        done = request.query_params.get("done")
        message = None
        n = request.query_params.get("n", "")
        if done in {a.done for a in ACTIONS.values()} and n.isdigit():
            skipped = request.query_params.get("skipped", "0")
            message = f"{n} job(s) {done}"
            if skipped.isdigit() and int(skipped):
                message += (f"; {skipped} left as they were (workflow steps whose upstream "
                            "step has not succeeded, or tokens)")
        return show(request, form, error, page, message, before)

    async def search(request: Request) -> Response:
        params = await form_body(request)
        text = (params.get("text") or [""])[-1]
        try:
            form = await run_in_threadpool(parse_form, params, searches, text)
        except ValueError as exc:
            return await run_in_threadpool(show, request, None, str(exc))
        return ui.redirect(request, "/jobs?" + form.query())

    def count(request: Request) -> Response:
        form, error = form_of(request)
        n = None if form is None else app.store.count_jobs(form.filter, COUNT_CAP)
        return ui.render(request, "_jobs_count.html", count=n, cap=COUNT_CAP, error=error)

    def confirm(request: Request) -> Response:
        form, error = form_of(request)
        action = ACTIONS.get(request.query_params.get("action", ""))
        if action is None:
            error = error or "unknown action: retry, cancel or delete"
        n = top = None
        narrowed = None
        if form is not None and action is not None:
            narrowed = form.filter.narrowed(action.states)
            top = app.store.top_job_id()
            n = app.store.count_jobs(narrowed, COUNT_CAP) if narrowed.states else 0
        return ui.render(request, "jobs_confirm.html", status_code=400 if error else 200,
                         form=form, error=error, action=action, count=n, cap=COUNT_CAP,
                         upto=top, narrowed=narrowed)

    async def act(request: Request) -> Response:
        ui.check_write(request)
        params = await form_body(request)
        action = ACTIONS.get((params.get("action") or [""])[-1])
        try:
            if action is None:
                raise ValueError("unknown action: retry, cancel or delete")
            form = await run_in_threadpool(parse_form, params, searches)
            if "upto" in params:
                upto = params["upto"][-1]
                if not upto.isdigit():
                    raise ValueError("the confirmation lost its bound: confirm again")
                done, skipped = await run_in_threadpool(bulk_all, app, action, form.filter,
                                                        int(upto))
            else:
                ids = [int(v) for v in params.get("id", []) if v.isdigit() and int(v) < 2**63]
                if not ids:
                    raise ValueError(f"no job selected: tick the jobs to {action.verb}, or "
                                     f"use “{action.verb} all matching”")
                done, skipped = await run_in_threadpool(bulk_ids, app, action, ids)
        except ValueError as exc:
            return await run_in_threadpool(show, request, None, str(exc))
        return ui.redirect(request, "/jobs?" + form.query(done=action.done, n=done,
                                                         skipped=skipped or None))

    return [Route("/jobs", listing, name="jobs"),
            Route("/jobs/search", search, methods=["POST"]),
            Route("/jobs/count", count),
            Route("/jobs/confirm", confirm),
            Route("/jobs/act", act, methods=["POST"]),
            *job.routes(ui)]

