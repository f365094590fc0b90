"""The App: the registry of tasks and cron entries, and the producer's side of the store."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from litejobs import workflows as _workflows
from litejobs.aio import aget_job as _aget_job
from litejobs.calls import build_job, encode, named_call, ring_for
from litejobs.config import (
    MAX_PAYLOAD,
    Config,
    check_durability,
    database_path,
    load_config,
    redacted_url,
)
from litejobs.decoration import check_new_task, task_defaults
from litejobs.decoration import task_name as name_of
from litejobs.deliver import deliver as _deliver
from litejobs.deliver import register as _register_deliver
from litejobs.errors import StorageError
from litejobs.job import Job, State
from litejobs.newjob import NewJob
from litejobs.redact import check_redact
from litejobs.task import (
    DEFAULT_QUEUE,
    PLAIN,
    Backoff,
    CallOptions,
    Prepared,
    Task,
    TaskOptions,
)
from litejobs.validate import (
    INT64_MAX,
    check_int,
    check_name,
)

if TYPE_CHECKING:
    from litejobs.store import Store
    from litejobs.store.protocols import Ringer

__all__ = ["App", "CronSpec"]

P = ParamSpec("P")
R = TypeVar("R")

_STORE_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A cron entry as declared (``@app.cron`` or ``[cron.NAME]``); see ``litejobs.cron``."""

    name: str
    schedule: str
    task: str
    timezone: str = "UTC"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str = "@app.cron"


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` with options returns: a decorator keeping the signature."""

    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class App:
    """A litejobs application: one database and the tasks that run against it.

    ``App("jobs.db")`` names the file (created on first use), ``App("postgresql://...")`` a
    PostgreSQL database (``pip install 'litejobs[postgres]'``); ``App.from_config(path)`` takes
    the database and settings of a litejobs.toml. ``app.path`` is the file's absolute path
    (for PostgreSQL, the URL without its password).
    """

    def __init__(
        self,
        database: str | os.PathLike[str],
        *,
        durability: str = "full",
        max_payload: int = MAX_PAYLOAD,
        config: Config | None = None,
    ) -> None:
        # The store (SQLite and its statements) is loaded on first use: every worker imports
        # the app's module, and a worker never opens the file (its supervisor does).
        self.durability = check_durability(durability)
        #: The database as given, absolute (a PostgreSQL URL with its password: never print it)
        self.database = database_path(database)
        #: The file's absolute path; for PostgreSQL the URL without its password.
        self.path = redacted_url(self.database)
        self._store: Store | None = None
        self.config = config or Config(database=self.database, durability=durability,
                                       max_payload=max_payload)
        self.max_payload = max_payload
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._origins: dict[tuple[str, str], str] = {}  # (file, qualname): auto-derived name
        self.cron_specs: dict[str, CronSpec] = {}
        self._bell: Ringer | None = None
        #: Per task (its defaults): the validated job of a plain call, arguments aside.
        self._plain: dict[TaskOptions | None, NewJob] = {}
        #: The time enqueues read (``litejobs.testing.Clock`` replaces it in tests).
        self.clock: Callable[[], float] = time.time
        _register_deliver(self)  # the built-in task litejobs.deliver: every worker runs it
        for name, table in self.config.cron.items():
            self.add_cron_table(name, table, self.config.source or "litejobs.toml")

    @property
    def store(self) -> Store:
        """The database's store (opened on first use): the SQLite ``Store`` of a file, the
        ``PostgresStore`` of a URL (same operations)."""
        store = self._store
        if store is None:
            from litejobs.store import open_store

            with _STORE_LOCK:  # threads of a web app may all enqueue first at once
                store = self._store
                if store is None:
                    store = self._store = open_store(self.database,
                                                     durability=self.durability)
        return store

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] = "litejobs.toml") -> App:
        """An App for the database and settings of a litejobs.toml file; ``LITEJOBS_DATABASE``
        and ``LITEJOBS_DURABILITY`` (and the other ``LITEJOBS_*`` variables) override the file,
        as for the ``litejobs`` command."""
        config = load_config(os.fspath(path))
        database = config.database or os.path.join(os.path.dirname(config.source or "."),
                                                   "litejobs.db")
        return cls(database, durability=config.durability, max_payload=config.max_payload,
                   config=config)

    def __repr__(self) -> str:
        return f"<litejobs.App {self.path} tasks={len(self.tasks)}>"

    # --- registry ----------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        retries: int = 3,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        unique_for: float | None = None,
        concurrency_key: str | Callable[..., str] | None = None,
        concurrency_limit: int | None = None,
        tags: Sequence[str] | None = None,
        redact: Sequence[str] | None = None,
        flow_key: str | Callable[..., str] | None = None,
        rate_limit: str | None = None,
    ) -> TaskDecorator: ...

    def task(  # type: ignore[misc]  # mypy misreads the bare-or-options overload pair
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        retries: int = 3,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        unique_for: float | None = None,
        concurrency_key: str | Callable[..., str] | None = None,
        concurrency_limit: int | None = None,
        tags: Sequence[str] | None = None,
        redact: Sequence[str] | None = None,
        flow_key: str | Callable[..., str] | None = None,
        rate_limit: str | None = None,
    ) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., ...)``.
        ``tags``: every job of the task gets them, unless a call gives its own
        (``options(tags=...)`` replaces them, like every other option). ``redact``: names
        of arguments the dashboard and the CLI show as "•••" (passwords, card numbers).
        ``flow_key`` (a string, or a function of the task's arguments returning one; the
        general form of ``concurrency_key``), ``rate_limit`` ("N/s", "N/m", "N/h": at most N
        starts per key in any such period) and ``concurrency_limit`` (at most M running per
        key; default 1 without a rate_limit, no cap with one): docs/flow-keys.md."""
        defaults_of = task_defaults(
            queue=queue, priority=priority, retries=retries, timeout=timeout, backoff=backoff,
            retry_on=retry_on, unique_for=unique_for, concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit, tags=tags, redact=redact, flow_key=flow_key,
            rate_limit=rate_limit)

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            if not callable(func):
                raise TypeError(f"@app.task needs a function, not {func!r}")
            task_name = name_of(func, name)
            defaults = defaults_of(task_name)
            check_new_task(self.tasks, self._origins, task_name, func, named=name is not None)
            t: Task[Any, Any] = Task(self, func, defaults, check_redact(redact, func))
            self.tasks[task_name] = t
            return t

        if fn is not None:
            return register(fn)
        return register

    def cron(
        self,
        schedule: str,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task and fire it on a cron ``schedule`` (5 fields, 6 with
        seconds last, or @hourly/@daily/@weekly/@monthly/@yearly) in ``timezone``.

        ``options``: misfire ("latest", "skip", "all"), catchup (seconds), overlap ("skip",
        "allow", "queue"), queue, priority. Invalid values raise ``ValueError`` at once.
        """

        def register(func: Callable[P, R]) -> Task[P, R]:
            from litejobs.cron import entry_from_spec  # validation; zoneinfo only if used

            t = func if isinstance(func, Task) else self.task(func)
            entry = name or t.name
            spec = CronSpec(entry, schedule, t.name, timezone, tuple(args), dict(kwargs or {}),
                            dict(options))
            entry_from_spec(spec.name, spec.schedule, spec.task, spec.timezone, spec.args,
                            spec.kwargs, spec.options, spec.source)
            self.cron_specs[entry] = spec
            return t

        return register

    def add_cron_table(self, name: str, table: Mapping[str, Any], source: str) -> None:
        """Add a ``[cron.NAME]`` table of a config file (validated when the ticker starts, so
        an unknown task can still be registered after the config is read)."""
        rest = {k: v for k, v in table.items()
                if k not in ("schedule", "task", "timezone", "args", "kwargs")}
        self.cron_specs[name] = CronSpec(
            name, str(table["schedule"]), str(table["task"]), str(table.get("timezone", "UTC")),
            tuple(table.get("args", ())), dict(table.get("kwargs", {})), rest, source,
        )

    # --- producing ---------------------------------------------------------------------------

    def ring(self, message: bytes = b"e") -> None:
        """Wake the supervisors serving this database (a hint; never raises)."""
        if self._bell is None:
            self._bell = self.store.bell()
        with contextlib.suppress(StorageError):  # the write it follows is committed: a
            self._bell.ring(message)  # supervisor's poll finds it

    def ring_inserted(self, message: bytes) -> None:
        """``ring`` after an insert of new jobs, unless the store's insert rang already."""
        if not self.store.inserts_ring:
            self.ring(message)

    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Job:
        """Enqueue a call by task name; the name need not be registered in this process.

        ``options`` are those of ``task.options(...)``: delay, run_at, queue, priority, key,
        retries, timeout, expires, debounce, tags, flow_key, rate_limit, concurrency_limit.
        """
        check_name("task name", task)
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise TypeError(f"args must be a list of arguments, not {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}")
        unknown = set(options) - set(CallOptions.__slots__)
        if unknown:
            raise TypeError(f"unknown enqueue option(s) {', '.join(sorted(unknown))}; known: "
                            f"{', '.join(sorted(CallOptions.__slots__))}")
        return self.enqueue_one(named_call(
            self, task, args, kwargs or {}, CallOptions(**options) if options else PLAIN))

    def enqueue_one(self, call: Prepared) -> Job:
        """Enqueue one prepared call (what ``task.enqueue`` does); committed on return."""
        now = self.clock()
        job = build_job(call, now, self._plain, self.max_payload)
        row = self.store.insert_job(job, now)
        self.ring_inserted(ring_for([job], now))
        return Job(self, row)

    def enqueue_many(self, calls: Iterable[Prepared]) -> list[Job]:
        """Enqueue many prepared calls in one transaction: all are written, or none."""
        if isinstance(calls, Prepared):
            raise TypeError("enqueue_many takes a list of task.prepare(...) values, not one; "
                            "wrap it in a list, or use task.enqueue(...) for a single call")
        now = self.clock()
        new = encode(calls if isinstance(calls, list | tuple) else list(calls), now,
                     self._plain, self.max_payload)
        if not new:
            return []
        rows = self.store.insert_jobs(new, now)
        self.ring_inserted(ring_for(new, now))
        return [Job(self, row) for row in rows]

    #: ``app.deliver(url, json=None, body=None, method="POST", headers=None, timeout=None,
    #: retries=5, callback=None, failure_callback=None, key=None, delay=None, flow_key=None,
    #: rate_limit=None, concurrency_limit=None) -> Job``: see ``litejobs.deliver.deliver``.
    deliver = _deliver

    def build_job(self, p: Prepared, now: float) -> NewJob:
        """Validate and encode one prepared call (raises TypeError/ValueError; writes
        nothing)."""
        return build_job(p, now, self._plain, self.max_payload)

    def pause_queue(self, queue: str) -> None:
        """Pause a queue: its jobs wait (running ones finish). Persisted in the database, so
        every supervisor on the file obeys it until ``resume_queue``."""
        self.store.set_paused(check_name("queue", queue), True)

    def resume_queue(self, queue: str) -> None:
        """Let a paused queue's jobs run again."""
        self.store.set_paused(check_name("queue", queue), False)
        self.ring(b"e")

    # --- cron entries stored at run time (litejobs.schedules) -------------------------------

    def schedule(self, name: str, schedule: str, task: str, args: Sequence[Any] = (),
                 kwargs: Mapping[str, Any] | None = None, timezone: str = "UTC",
                 **cron_options: Any) -> dict[str, Any]:
        """Store cron entry ``name`` in the database (replacing a stored one of that name);
        every supervisor on the file fires it. ``cron_options`` as ``@app.cron``'s. Returns it
        as ``litejobs cron list --json`` shows it; ValueError for an invalid entry,
        ``ScheduleClash`` for the name of a litejobs.toml or ``@app.cron`` entry."""
        from litejobs import schedules

        return schedules.schedule(self, name, schedule, task, args, kwargs, timezone,
                                  **cron_options)

    def unschedule(self, name: str) -> bool:
        """Remove stored cron entry ``name``; False when there is none."""
        from litejobs import schedules

        return schedules.unschedule(self, name)

    def schedules(self) -> list[dict[str, Any]]:
        """Every cron entry (litejobs.toml, ``@app.cron``, stored) with its ``source``."""
        from litejobs import schedules

        return schedules.schedules(self)

    # --- workflows and tokens (litejobs.workflows) ---------------------------------------

    workflow = _workflows.new_workflow
    get_workflow = _workflows.get_workflow
    create_token = _workflows.create_token
    complete_token = _workflows.complete_token

    # --- reading -----------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job | None:
        """The job with this id, or None when there is none (never enqueued, or pruned)."""
        job_id = int(job_id)
        if not 0 < job_id <= INT64_MAX:  # no such id; SQLite could not even look it up
            return None
        row = self.store.get_job(job_id)
        return None if row is None else Job(self, row)

    aget_job = _aget_job  # ``await app.aget_job(id)``: get_job for async code (litejobs.aio)

    def jobs(self, state: str | None = None, task: str | None = None,
             queue: str | None = None, tag: str | None = None,
             workflow: int | str | None = None, limit: int = 50) -> list[Job]:
        """Jobs newest first, at most ``limit``; every filter given must match (``tag``: one
        of the job's tags; ``workflow``: a run's id, its steps)."""
        if state is not None:
            try:
                state = State(state).value
            except ValueError:
                raise ValueError(f"state must be one of {', '.join(s.value for s in State)}, "
                                 f"not {state!r}") from None
        limit = check_int("limit", limit, 1)
        if isinstance(workflow, str):
            if not workflow.isdigit():
                return []  # run ids are numbers: no run has this one
            workflow = int(workflow)
        run = None if workflow is None else check_int("workflow", workflow, 1)
        rows = self.store.list_jobs(state=state, task=task, queue=queue, tag=tag, limit=limit,
                                    workflow=run)
        return [Job(self, r) for r in rows]

    def stats(self) -> dict[str, Any]:
        """``{"states": {state: n, …}, "queues": {name: {state: n, …}}}``, zeros included."""
        return self.store.stats()
