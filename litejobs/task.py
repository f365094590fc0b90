"""Tasks: registered functions, their options, and the calls (``prepare``) that become jobs."""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.job import Job

__all__ = ["Backoff", "CallOptions", "Prepared", "Task", "TaskOptions"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_QUEUE = "default"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off between retries.

    The delay before retry ``k`` (1, 2, …) is ``min(max, base * factor**(k-1))`` seconds; with
    ``jitter`` it is multiplied by a random factor in [0.5, 1.0] so failed jobs do not return
    in lockstep.
    """

    base: float = 1.0
    factor: float = 2.0
    max: float = 3600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        from litejobs.validate import MAX_SECONDS

        values = (self.base, self.factor, self.max)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                   for v in values) or not (
                0 <= self.base <= MAX_SECONDS and self.factor >= 1 and
                0 <= self.max <= MAX_SECONDS):
            raise ValueError(
                "Backoff needs finite numbers: base and max from 0 to 100 years of seconds, "
                f"factor >= 1; got base={self.base!r}, factor={self.factor!r}, max={self.max!r}"
            )

    def delay_after(self, k: int, error: BaseException | None) -> float:
        """Seconds to wait before retry ``k`` after ``error`` (None: an error only the
        supervisor saw). The plain back-off ignores the error; a subclass may read it (a
        delivery's receiver saying when, in Retry-After)."""
        return self.delay(k)

    def delay(self, k: int) -> float:
        """Seconds to wait before retry ``k`` (1-based)."""
        try:
            raw = self.base * self.factor ** (max(k, 1) - 1)
        except OverflowError:
            raw = self.max
        value = min(self.max, raw)
        if self.jitter:
            value *= random.uniform(0.5, 1.0)
        return value


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """A task's defaults, fixed at ``@app.task``."""

    name: str
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    retries: int = 3
    timeout: float | None = None
    backoff: Backoff = field(default_factory=Backoff)
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    unique_for: float | None = None
    #: The flow key (``flow_key`` or ``concurrency_key``: one column, one meaning).
    concurrency_key: str | Callable[..., str] | None = None
    #: At most this many running jobs per key; None: 1 without a rate, no cap with one.
    concurrency_limit: int | None = None
    #: At most N starts per key in any P seconds, parsed from ``rate_limit="N/P"``.
    flow_rate: tuple[int, float] | None = None
    #: Every job's tags unless a call gives its own (validated at ``@app.task``).
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call overrides (``task.options(...)``); ``None`` keeps the task's default."""

    delay: float | None = None
    run_at: datetime | float | None = None
    queue: str | None = None
    priority: int | None = None
    key: str | None = None
    retries: int | None = None
    timeout: float | None = None
    expires: float | None = None
    debounce: float | None = None
    concurrency_key: str | Callable[..., str] | None = None
    #: At most 16 strings of 1..64 characters (validated at enqueue).
    tags: Sequence[str] | None = None
    #: The job's flow key (the general form of ``concurrency_key``; validated at enqueue).
    flow_key: str | Callable[..., str] | None = None
    #: ``"N/s"``, ``"N/m"`` or ``"N/h"``: at most N starts of the key's jobs per period.
    rate_limit: str | None = None
    #: At most this many jobs of the key running at once.
    concurrency_limit: int | None = None


#: The options of a call that overrides nothing (shared, so ``build_job`` can spot it fast).
PLAIN = CallOptions()


@dataclass(slots=True)  # not frozen: a frozen init costs ~0.7 µs a call, this one ~0.2
class Prepared:
    """A call ready to enqueue, as made by ``task.prepare(...)``; give a list of them to
    ``app.enqueue_many`` (treat it as a value)."""

    task: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    options: CallOptions = PLAIN
    defaults: TaskOptions | None = None
    param_names: tuple[str, ...] = ()
    #: The app of the task that made it (``litejobs.chain(...).enqueue()`` finds it here).
    app: App | None = field(default=None, compare=False, repr=False)


def positional_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params if p.kind in kinds)


class _Caller(Generic[P, R]):
    """What ``enqueue`` and ``prepare`` share between a task and its ``options()``."""

    _task: Task[P, R]
    _call: CallOptions

    def prepare(self, *args: P.args, **kwargs: P.kwargs) -> Prepared:
        """The call as a value, for ``app.enqueue_many``; nothing is written."""
        t = self._task
        return Prepared(t.name, args, kwargs, self._call, t.defaults, t.param_names, t.app)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue one call; the job is committed when this returns."""
        return self._task.app.enqueue_one(self.prepare(*args, **kwargs))

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """``enqueue`` for async code: the write runs in a thread, so the event loop is not
        blocked while it waits for the database."""
        from litejobs.aio import enqueue

        return await enqueue(self, args, kwargs)


class BoundTask(_Caller[P, R]):
    """A task with per-call options, as returned by ``task.options(...)``."""

    def __init__(self, task: Task[P, R], call: CallOptions) -> None:
        self._task = task
        self._call = call

    def options(self, **overrides: Any) -> BoundTask[P, R]:
        return BoundTask(self._task, replace(self._call, **overrides))


class Task(_Caller[P, R]):
    """A registered function. Call it to run inline; ``enqueue`` it to run in a worker."""

    def __init__(self, app: App, fn: Callable[P, R], defaults: TaskOptions,
                 redact: tuple[str, ...] = ()) -> None:
        self.app = app
        self.fn = fn
        self.defaults = defaults
        #: The arguments the dashboard and the CLI show as "•••" (``@app.task(redact=...)``);
        #: kept off TaskOptions, which every enqueue hashes.
        self.redact = redact
        self.param_names = positional_names(fn)
        self._task = self
        self._call = PLAIN
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", defaults.name)
        self.__wrapped__ = fn

    @property
    def name(self) -> str:
        return self.defaults.name

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.defaults.queue}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def options(
        self,
        *,
        delay: float | None = None,
        run_at: datetime | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        key: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        expires: float | None = None,
        debounce: float | None = None,
        concurrency_key: str | Callable[..., str] | None = None,
        tags: Sequence[str] | None = None,
        flow_key: str | Callable[..., str] | None = None,
        rate_limit: str | None = None,
        concurrency_limit: int | None = None,
    ) -> BoundTask[P, R]:
        """Per-call overrides; ``.enqueue(...)`` or ``.prepare(...)`` on the result.
        ``tags``: at most 16 strings of 1..64 characters, to find the job by
        (``app.jobs(tag=...)``, ``litejobs jobs --tag``). ``flow_key`` (a string, or a
        function of the task's arguments returning one) with ``rate_limit`` ("N/s", "N/m",
        "N/h": at most N starts of the key's jobs in any such period) and
        ``concurrency_limit`` (at most M of them running at once): see docs/flow-keys.md."""
        return BoundTask(self, CallOptions(delay, run_at, queue, priority, key, retries,
                                           timeout, expires, debounce, concurrency_key,
                                           tags, flow_key, rate_limit, concurrency_limit))
