"""asyncio: ``async def`` tasks on the worker's event loop, and producers that await.

A worker runs ``async def`` tasks' coroutines on one event loop, made at the first such job
and reused for every later one (a loop per job would cost its setup each time), up to
``async_concurrency`` at once (``litejobs.aioworker``). The loop runs in the worker's main
thread; each coroutine runs in an asyncio Task with a context of its own, so its
``current_job()`` (a context variable) is its own job, and everything after the coroutine
returns (its result, exception, retries, ``litejobs.then``) is the sync path's
(``litejobs.jobrun``). Tasks a coroutine spawns and does not await stay on the loop and run
on during the worker's next async jobs.

Producers in async code (``await task.aenqueue(...)``, ``await job.aresult()``, ``await
app.aget_job(id)``) run the store's blocking calls in a thread (``asyncio.to_thread``): the
store opens one SQLite connection per thread, so none is shared. ``asyncio`` itself is
imported only when one of these runs: ``import litejobs`` stays free of it.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from litejobs.errors import JobTimeout

if TYPE_CHECKING:
    import asyncio

    from litejobs.app import App
    from litejobs.job import Job
    from litejobs.task import Task, _Caller

__all__ = ["aget_job", "aresult", "bounded", "is_async", "run", "soft_timeout", "worker_loop"]

#: The worker's event loop, made by the first async job (worker processes only).
_loop: asyncio.AbstractEventLoop | None = None


def is_async(task: Task[Any, Any] | None) -> bool:
    """Whether ``task``'s jobs run as coroutines, beside others (an ``async def``). The
    supervisor and the worker both ask this, to agree on which jobs run at once."""
    import inspect

    return task is not None and inspect.iscoroutinefunction(task.fn)


def worker_loop() -> asyncio.AbstractEventLoop:
    """This worker's event loop, made at the first call and kept for its life."""
    global _loop
    if _loop is None:
        import asyncio

        _loop = asyncio.new_event_loop()  # never closed
        asyncio.set_event_loop(_loop)
    return _loop


def soft_timeout(timeout: float) -> float:
    """When a coroutine with ``timeout`` is cancelled: a little before the supervisor's hard
    stop (whose clock started when it sent the job, a moment before the worker began it), so
    a coroutine that stops when cancelled is failed without its worker being ended."""
    return max(timeout - min(0.5, timeout * 0.1), timeout * 0.5)


def run(coro: Coroutine[Any, Any, Any], attempt: int, timeout: float | None) -> Any:
    """Run a task's coroutine to completion on this worker's event loop and return its
    value; its exception propagates. Past ``timeout`` it is cancelled and ``JobTimeout``
    raised (one that ignores the cancellation is ended by the supervisor's hard timeout)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # run_until_idle called from async code (a worker has no running loop here)
        return _beside(coro, attempt, timeout)
    # Not Runner.run: its per-call bookkeeping costs about 3x this. The task the loop wraps
    # the coroutine in copies the current context, where this job's current_job() is set.
    return worker_loop().run_until_complete(bounded(coro, attempt, timeout))


def _beside(coro: Coroutine[Any, Any, Any], attempt: int, timeout: float | None) -> Any:
    """Run the coroutine on a loop of its own in another thread, with this job's context,
    for a caller whose thread already runs a loop (that loop waits meanwhile)."""
    import asyncio
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="litejobs-aio") as pool:
        context = contextvars.copy_context()
        return pool.submit(context.run, asyncio.run, bounded(coro, attempt, timeout)).result()


async def bounded(coro: Coroutine[Any, Any, Any], attempt: int, timeout: float | None) -> Any:
    """Await ``coro``; cancelled at ``soft_timeout(timeout)``, it ends in ``JobTimeout``."""
    if timeout is None:
        return await coro
    import asyncio

    scope = asyncio.timeout(soft_timeout(timeout))
    try:
        async with scope:
            return await coro
    except TimeoutError:
        if not scope.expired():
            raise  # the task's own TimeoutError, not its timeout
        raise JobTimeout(f"attempt {attempt} ran past its timeout of {timeout:g} s and was "
                         "cancelled") from None


async def enqueue(caller: _Caller[Any, Any], args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Job:
    """``caller.enqueue(*args, **kwargs)`` without blocking the event loop."""
    import asyncio

    p = caller.prepare(*args, **kwargs)  # a bad call is refused here, in the caller's frame
    return await asyncio.to_thread(caller._task.app.enqueue_one, p)


async def aresult(job: Job, timeout: float | None = None) -> Any:
    """``job.result(timeout)`` without blocking the event loop: each look at the job runs
    in a thread, the waits between them are ``asyncio.sleep``."""
    import asyncio

    from litejobs.job import Patience

    patience = Patience(timeout)
    current = job
    while True:
        current, done, value = await asyncio.to_thread(current._look)
        if done:
            return value
        await asyncio.sleep(patience.pause(current, value))


async def aget_job(app: App, job_id: int) -> Job | None:
    """The job with this id, or None when there is none (``app.get_job`` without blocking
    the event loop)."""
    import asyncio

    return await asyncio.to_thread(app.get_job, job_id)
