"""The HTTP API's endpoints over other rooms: ``POST /api/v1/publish`` (``app.deliver``) and the
stored schedules (``app.schedules`` / ``schedule`` / ``unschedule``). The rules (token, caps,
errors) are ``litejobs.web.api``'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from litejobs import errors
from litejobs.web.api import job_object, known_task
from litejobs.web.apibody import ApiError, guarded, only_fields, typed

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from litejobs.app import App

__all__ = ["publish", "routes", "schedule", "unschedule"]

#: The fields of ``POST /api/v1/publish`` and the types ``app.deliver`` takes them as.
PUBLISH: dict[str, tuple[tuple[type, ...], str]] = {
    "url": ((str,), "a URL string"),
    "method": ((str,), "an HTTP method, e.g. POST"),
    "headers": ((dict,), "an object of header names to strings"),
    "body": ((str,), "a string (send a JSON value as 'json')"),
    "json": ((dict, list, str, int, float, bool), "a JSON value"),
    "delay": ((int, float), "a number of seconds"),
    "retries": ((int,), "a whole number"),
    "timeout": ((int, float), "a number of seconds"),
    "callback": ((str,), "a URL string"),
    "failure_callback": ((str,), "a URL string"),
    "flow_key": ((str,), "a string"),
    "rate_limit": ((str,), 'a rate such as "10/s"'),
    "concurrency_limit": ((int,), "a whole number"),
}
SCHEDULE_FIELDS = ("name", "schedule", "task", "args", "kwargs", "timezone")


def _feature(app: App, name: str, what: str) -> Any:
    method = getattr(app, name, None)
    if method is None:
        raise ApiError(501, f"{what} is not in this version of litejobs (no app.{name}); "
                            "upgrade litejobs on the server")
    return method


def publish(app: App, body: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
    """``app.deliver(...)`` of the body: 201 the delivery job, 200 its live twin (key)."""
    deliver = _feature(app, "deliver", "publishing (app.deliver)")
    only_fields(body, (*PUBLISH, "key"), "a delivery")
    values = {name: typed(body, name, kinds, hint) for name, (kinds, hint) in PUBLISH.items()}
    if values["url"] is None:
        raise ApiError(400, "'url' is required: where to deliver, e.g. "
                            '{"url": "https://example.com/hook", "json": {"id": 1}}')
    if values["body"] is not None and values["json"] is not None:
        raise ApiError(400, "give 'body' (a string sent as is) or 'json' (a value sent as "
                            "JSON), not both")
    headers = values["headers"]
    if headers is not None and not all(isinstance(v, str) for v in headers.values()):
        raise ApiError(400, "'headers' values must be strings, e.g. {\"X-Id\": \"7\"}")
    url = values.pop("url")
    options = {k: v for k, v in values.items() if v is not None}
    if key is not None:
        options["key"] = key
    before = _now(app)
    job = guarded(lambda: deliver(url, **options))
    return (201 if key is None or job.created_at >= before else 200), job_object(app, job)


def _now(app: App) -> Any:
    import time
    from datetime import UTC, datetime

    # on the store's clock, as the job's created_at (on PostgreSQL the server's)
    return datetime.fromtimestamp(time.time() + app.store.clock_offset(), UTC)


def schedule(app: App, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """``app.schedule(...)`` of the body (options as ``[cron.NAME]`` spells them): 201 the
    stored entry."""
    store = _feature(app, "schedule", "schedules at run time (app.schedule)")
    name = typed(body, "name", (str,), "a schedule name")
    spec = typed(body, "schedule", (str,), 'a cron expression, e.g. "*/5 * * * *"')
    if not name or not spec:
        raise ApiError(400, "'name' and 'schedule' are required, e.g. {\"name\": \"nightly\", "
                            "\"schedule\": \"0 3 * * *\", \"task\": \"reports.build\"}")
    task = known_task(app, body.get("task"))
    args = typed(body, "args", (list,), "an array of arguments") or []
    kwargs = typed(body, "kwargs", (dict,), "an object of keyword arguments")
    timezone = typed(body, "timezone", (str,), 'a time zone name, e.g. "Europe/Paris"')
    options = {k: v for k, v in body.items() if k not in SCHEDULE_FIELDS}
    clash = getattr(errors, "ScheduleClash", None)
    try:
        entry = store(name, spec, task, args=args, kwargs=kwargs,
                      timezone=timezone or "UTC", **options)
    except TypeError as exc:
        raise ApiError(400, str(exc)) from None
    except ValueError as exc:
        if clash is not None and isinstance(exc, clash):
            raise ApiError(409, str(exc)) from None
        raise ApiError(422, str(exc)) from None
    return 201, entry


def unschedule(app: App, name: str) -> dict[str, Any]:
    remove = _feature(app, "unschedule", "schedules at run time (app.unschedule)")
    try:
        removed = remove(name)
    except ValueError as exc:  # an entry of litejobs.toml or a decorator: not stored here
        raise ApiError(409, str(exc)) from None
    if not removed:
        raise ApiError(404, f"no stored schedule named {name!r}; GET /api/v1/schedules lists "
                            "them")
    return {"name": name, "deleted": True}


def routes(app: App, endpoint: Callable[..., Any],
           key: Callable[[Request, dict[str, Any]], str | None]) -> list[BaseRoute]:
    """``/publish`` and ``/schedules``, made with ``api.mount``'s ``endpoint``."""
    from starlette.routing import Route

    def listed(request: Request, body: dict[str, Any]) -> Any:
        return 200, _feature(app, "schedules", "schedules at run time (app.schedules)")()

    return [
        Route("/publish", endpoint(lambda r, b: publish(app, b, key(r, b))), methods=["POST"]),
        Route("/schedules", endpoint(listed, reads_body=False), methods=["GET"]),
        Route("/schedules", endpoint(lambda r, b: schedule(app, b)), methods=["POST"]),
        Route("/schedules/{name:path}",
              endpoint(lambda r, b: unschedule(app, r.path_params["name"]), reads_body=False),
              methods=["DELETE"]),
    ]
