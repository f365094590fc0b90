"""Where Django's tasks meet a litejobs App: one App per backend alias and database, and in
it, per Django task, a litejobs task of the same name (the task's ``module_path``).

Django makes a backend object per thread (``task_backends`` is a thread-local handler), so
the App and the registry live here, shared by those objects: a task registered by the main
thread is found by a request's thread and by ``sync_to_async``'s. The registry is filled by
code, never by a name read from the database: a task is registered when Django validates it
(its ``@task`` decorator runs ``validate_task``), and a worker imports each installed app's
``tasks`` module at start (``discover``), as Celery's autodiscovery does.
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from litejobs.app import App
from litejobs.task import BoundTask, Task

__all__ = ["BACKEND_ENV", "OPTION_KEYS", "Bridge", "app_for", "bridge_for", "discover"]

#: The environment variable naming the TASKS alias ``manage.py litejobs`` and its workers
#: serve (``--backend ALIAS``; default "default").
BACKEND_ENV = "LITEJOBS_DJANGO_BACKEND"
#: The keys of a backend's ``OPTIONS`` (docs/django.md); any other is refused by name.
OPTION_KEYS = ("database", "durability", "retries", "enqueue_on_commit", "using", "cron",
               "task_modules", "max_payload")

_LOCK = threading.Lock()
#: (backend alias, database path) -> its bridge. Django's settings are global state already;
#: this mirrors them, one entry per configured backend.
_BRIDGES: dict[tuple[str, str], Bridge] = {}


@dataclass(slots=True)
class Bridge:
    """A backend alias's App and the Django tasks registered in it, by module path."""

    alias: str
    app: App
    retries: int
    django_tasks: dict[str, Any] = field(default_factory=dict)

    def register(self, task: Any) -> Task[Any, Any]:
        """The litejobs task that runs Django ``task`` (registered on first sight; later
        variants made by ``task.using(...)`` share it: their differences go per call)."""
        name: str = task.module_path
        known = self.app.tasks.get(name)
        if known is not None and name in self.django_tasks:
            return known
        from litejobs.contrib.django.runner import runner_for

        opts = _task_options(task)
        retries = opts.get("retries")
        registered: Task[Any, Any] = self.app.task(
            name=name,
            queue=task.queue_name,
            priority=int(task.priority),
            retries=self.retries if retries is None else retries,
            timeout=opts.get("timeout"),
            concurrency_key=opts.get("concurrency_key"),
            concurrency_limit=opts.get("concurrency_limit"),
            rate_limit=opts.get("rate_limit"),
            tags=opts.get("tags") or None,
        )(runner_for(self, task))
        self.django_tasks[name] = task
        return registered

    def call(self, task: Any) -> BoundTask[Any, Any]:
        """``task`` (a Django Task, maybe changed by ``using``) as a litejobs call with its
        queue, priority, run_after and litejobs options."""
        registered = self.register(task)
        opts = _task_options(task)
        run_after = task.run_after
        if run_after is not None and run_after.tzinfo is None:  # USE_TZ = False: local time
            from django.utils import timezone

            run_after = timezone.make_aware(run_after)
        return registered.options(
            queue=task.queue_name, priority=int(task.priority), run_at=run_after,
            retries=opts.get("retries"), timeout=opts.get("timeout"), key=opts.get("key"),
            tags=opts.get("tags") or None, concurrency_key=opts.get("concurrency_key"),
            concurrency_limit=opts.get("concurrency_limit"), rate_limit=opts.get("rate_limit"),
        )


def _task_options(task: Any) -> dict[str, Any]:
    """The litejobs options a ``LitejobsTask`` carries ({} for a plain Django Task)."""
    from litejobs.contrib.django.backend import LITEJOBS_FIELDS

    return {name: getattr(task, name) for name in LITEJOBS_FIELDS if hasattr(task, name)}


def bridge_for(alias: str, options: Mapping[str, Any]) -> Bridge:
    """The bridge of backend ``alias`` configured with ``options`` (its ``OPTIONS``)."""
    from django.core.exceptions import ImproperlyConfigured

    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:  # a typo ("enqueue_on_comit") would otherwise be ignored without a word
        hints = [f" (did you mean {close[0]!r}?)" if close else ""
                 for close in (difflib.get_close_matches(k, OPTION_KEYS, 1) for k in unknown)]
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS'] has unknown key(s) "
            + ", ".join(f"{k!r}{h}" for k, h in zip(unknown, hints, strict=True))
            + f"; litejobs' backend takes {', '.join(OPTION_KEYS)} (docs/django.md)")
    database = options.get("database")
    if not isinstance(database, str | os.PathLike):
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS']['database'] must name the litejobs SQLite file "
            f"(e.g. BASE_DIR / 'jobs.db'), not {database!r}")
    if not os.path.isabs(os.fspath(database)):
        # each process would resolve it against its own working directory: a web server
        # started elsewhere than `manage.py litejobs run` would enqueue into another file
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS']['database'] must be an absolute path (e.g. "
            f"BASE_DIR / {os.fspath(database)!r}), not {os.fspath(database)!r}: a relative "
            "one names a different file in each working directory")
    path = os.path.abspath(os.fspath(database))
    with _LOCK:
        bridge = _BRIDGES.get((alias, path))
        if bridge is None:
            app = App(path, durability=str(options.get("durability", "full")),
                      **({"max_payload": options["max_payload"]}
                         if "max_payload" in options else {}))
            for name, table in dict(options.get("cron") or {}).items():
                app.add_cron_table(name, table, f"settings.TASKS[{alias!r}]['OPTIONS']['cron']")
            retries = options.get("retries", 0)
            bridge = _BRIDGES[(alias, path)] = Bridge(alias, app, retries)
            # Settings changed to another file (a test's override_settings): the alias's
            # tasks, registered at import on the first bridge, are this one's too.
            for other in list(_BRIDGES.values()):
                if other.alias == alias and other is not bridge:
                    for task in list(other.django_tasks.values()):
                        bridge.register(task)
    return bridge


def discover(alias: str = "default") -> App:
    """Import every installed app's ``tasks`` module (and ``OPTIONS['task_modules']``) so
    their Django tasks register, then return the App of backend ``alias``: what a worker
    and ``manage.py litejobs`` run (see ``litejobs.contrib.django.worker``)."""
    import importlib

    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.tasks import task_backends
    from django.utils.module_loading import autodiscover_modules

    if alias not in settings.TASKS:
        raise ImproperlyConfigured(
            f"TASKS has no backend {alias!r} (it has {', '.join(map(repr, settings.TASKS))}); "
            f"give `manage.py litejobs --backend` (or {BACKEND_ENV}) one of those")
    backend = task_backends[alias]
    bridge: Bridge | None = getattr(backend, "bridge", None)
    if bridge is None:
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}] is a {type(backend).__name__}, not a litejobs backend; set its "
            "BACKEND to 'litejobs.contrib.django.LitejobsBackend' or pick another alias "
            "(LITEJOBS_DJANGO_BACKEND)")
    autodiscover_modules("tasks")
    for module in backend.options.get("task_modules", ()):
        importlib.import_module(module)  # named in settings (code), never by the database
    return bridge.app


def app_for(alias: str = "default") -> App:
    """The litejobs App behind Django backend ``alias``: plain litejobs tasks
    (``@app_for().task``), cron entries, ``app.get_job`` and the rest of litejobs' API."""
    from django.tasks import task_backends

    bridge: Bridge | None = getattr(task_backends[alias], "bridge", None)
    if bridge is None:
        raise ValueError(f"TASKS[{alias!r}] is not a litejobs backend")
    return bridge.app
