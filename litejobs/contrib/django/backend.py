"""``LitejobsBackend``: Django's task backend API on a litejobs database, and
``LitejobsTask``, the task class that carries litejobs' options (``@task(retries=5)``).

Every feature flag is on: ``run_after`` becomes the job's ``run_at`` (defer), ``async def``
tasks run on the worker's event loop, results are read from the database by any process,
and priority orders claims (-100..100, higher first, as in Django).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from typing import Any

from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_enqueued

from litejobs.app import App
from litejobs.contrib.django.bridge import Bridge, bridge_for
from litejobs.contrib.django.results import find_result, to_result
from litejobs.decoration import task_defaults
from litejobs.validate import check_name

__all__ = ["LITEJOBS_FIELDS", "LitejobsBackend", "LitejobsTask", "warn_if_not_installed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LitejobsTask(Task):  # type: ignore[misc]  # Django ships no type hints
    """A Django task with litejobs' options, made by ``@task(...)`` under this backend:

        @task(retries=5, timeout=30, key="nightly", tags=["billing"],
              concurrency_key="smtp", rate_limit="10/s")
        def send_invoice(invoice_id: int) -> None: ...

    ``retries`` (None: the backend's ``OPTIONS["retries"]``, default 0, as Django's
    backends run a task once), ``timeout`` (seconds; the attempt's process is ended past
    it), ``key`` (at most one pending job per key), ``tags``, ``concurrency_key`` with
    ``concurrency_limit`` and ``rate_limit`` (docs/flow-keys.md), ``enqueue_on_commit``
    (None: the backend's). ``task.using(...)`` takes them too, besides Django's own.
    """

    retries: int | None = None
    timeout: float | None = None
    key: str | None = None
    tags: tuple[str, ...] = ()
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    rate_limit: str | None = None
    enqueue_on_commit: bool | None = None

    def __post_init__(self) -> None:
        if self.tags is not None and not isinstance(self.tags, tuple):
            object.__setattr__(self, "tags", tuple(self.tags))  # a task is hashable
        Task.__post_init__(self)

    def using(self, *, priority: int | None = None, queue_name: str | None = None,
              run_after: Any = None, backend: str | None = None,
              **options: Any) -> LitejobsTask:
        """A copy with other defaults: Django's (priority, queue_name, run_after, backend)
        and litejobs' (retries, timeout, key, tags, concurrency_key, concurrency_limit,
        rate_limit, enqueue_on_commit)."""
        unknown = set(options) - set(LITEJOBS_FIELDS)
        if unknown:
            raise TypeError(f"unknown task option(s) {', '.join(sorted(unknown))}; litejobs "
                            f"takes {', '.join(LITEJOBS_FIELDS)}")
        task: LitejobsTask = Task.using(self, priority=priority, queue_name=queue_name,
                                        run_after=run_after, backend=backend)
        return replace(task, **options) if options else task


APP_NAME = "litejobs.contrib.django"
NOT_INSTALLED = (f"{APP_NAME!r} is not in INSTALLED_APPS, so `python manage.py litejobs run` "
                 "(the workers for this backend) does not exist")
_WARNED: set[str] = set()  # the aliases warned about, once a process


def warn_if_not_installed(alias: str) -> None:
    """One warning line per process when the app is missing. Django's system check
    (W001) alone is not enough: Django registers task backends' checks only once
    ``django.tasks`` is imported, which in most projects happens while the checks already
    run (the URLconf imports views, which import tasks), too late to be run."""
    from django.apps import apps

    if alias in _WARNED or not apps.ready or apps.is_installed(APP_NAME):
        return
    _WARNED.add(alias)
    logging.getLogger("litejobs.contrib.django").warning(
        "%s: add %r to INSTALLED_APPS", NOT_INSTALLED, APP_NAME)


LITEJOBS_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(LitejobsTask) if f.name not in {f.name for f in fields(Task)})


class LitejobsBackend(BaseTaskBackend):  # type: ignore[misc]  # Django ships no type hints
    """Django's task backend on litejobs. ``OPTIONS``: ``database`` (the SQLite file,
    required), ``durability`` ("full" or "fast"), ``retries`` (a task's default, 0),
    ``enqueue_on_commit`` (False), ``cron`` (``{name: {"schedule": ..., "task": ...}}``, as
    litejobs.toml's ``[cron.NAME]``), ``task_modules`` (modules holding tasks besides each
    installed app's ``tasks``), ``max_payload``."""

    task_class = LitejobsTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        #: The App (``bridge.app``) and the Django tasks registered in it.
        self.bridge: Bridge = bridge_for(alias, self.options)
        self.enqueue_on_commit = bool(self.options.get("enqueue_on_commit", False))
        warn_if_not_installed(alias)

    @property
    def app(self) -> App:
        """The litejobs App on ``OPTIONS["database"]``: ``litejobs.testing``'s helpers, the
        jobs' handles (``app.get_job(int(result.id))``), plain litejobs tasks."""
        return self.bridge.app

    def validate_task(self, task: Any) -> None:
        """Django's checks, then litejobs' (queue name, options): InvalidTask naming the
        problem. A valid task is registered, so workers and ``get_result`` find it."""
        super().validate_task(task)
        try:
            check_name("queue name", task.queue_name)
            values = {name: getattr(task, name) for name in LITEJOBS_FIELDS
                      if hasattr(task, name)}
            retries = values.get("retries")
            task_defaults(
                queue=task.queue_name, priority=int(task.priority),
                retries=0 if retries is None else retries, timeout=values.get("timeout"),
                backoff=None, retry_on=(Exception,), unique_for=None,
                concurrency_key=values.get("concurrency_key"),
                concurrency_limit=values.get("concurrency_limit"),
                tags=values.get("tags") or None, redact=None, flow_key=None,
                rate_limit=values.get("rate_limit"))
            if values.get("key") is not None:
                check_name("key", values["key"])
            if values.get("concurrency_key") is None and (
                    values.get("rate_limit") is not None
                    or values.get("concurrency_limit") is not None):
                # else every enqueue fails, naming litejobs' flow_key= (no Django option)
                raise ValueError(
                    "rate_limit and concurrency_limit limit the jobs of one key: give "
                    "concurrency_key= too (a whole queue's limits go in litejobs.toml's "
                    "[queues.NAME])")
            self.bridge.register(task)
        except (TypeError, ValueError) as exc:
            raise InvalidTask(f"{task.module_path}: {exc}") from None

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Write a job for ``task(*args, **kwargs)`` and return its TaskResult (READY); with
        ``enqueue_on_commit``, inside ``transaction.atomic`` the job is written when the
        transaction commits (never, if it rolls back): the result's ``id`` is "" until
        then, and set on it at the commit."""
        from django.utils.json import normalize_json

        self.validate_task(task)
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        on_commit = getattr(task, "enqueue_on_commit", None)
        if self.enqueue_on_commit if on_commit is None else on_commit:
            from django.db import transaction

            connection = transaction.get_connection(self.options.get("using"))
            if connection.in_atomic_block:
                pending = self._pending(task, args, kwargs)
                transaction.on_commit(lambda: self._write(task, args, kwargs, pending),
                                      using=self.options.get("using"))
                return pending
        return self._write(task, args, kwargs)

    def _write(self, task: Any, args: list[Any], kwargs: dict[str, Any],
               into: Any = None) -> Any:
        job = self.bridge.call(task).enqueue(*args, **kwargs)
        result = to_result(self.bridge, job, [], task)
        if into is not None:  # the result handed out before the commit becomes this one
            for f in fields(result):
                object.__setattr__(into, f.name, getattr(result, f.name))
            result = into
        task_enqueued.send(type(self), task_result=result)
        return result

    def _pending(self, task: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        from django.tasks.base import TaskResult, TaskResultStatus

        return TaskResult(task=task, id="", status=TaskResultStatus.READY, enqueued_at=None,
                          started_at=None, finished_at=None, last_attempted_at=None,
                          args=args, kwargs=kwargs, backend=self.alias, errors=[],
                          worker_ids=[])

    def check(self, **kwargs: Any) -> list[Any]:
        """Django's system checks (``manage.py check``): a warning when the command's app is
        not installed, as ``manage.py litejobs`` then does not exist."""
        from django.apps import apps
        from django.core.checks import Warning as CheckWarning

        if apps.is_installed(APP_NAME):
            return []
        return [CheckWarning(NOT_INSTALLED, hint=f"add {APP_NAME!r} to INSTALLED_APPS",
                             obj=self.alias, id="litejobs.W001")]

    def get_result(self, result_id: Any) -> Any:
        """The TaskResult of job ``result_id``, read now (any process may ask)."""
        return find_result(self.bridge, result_id)
