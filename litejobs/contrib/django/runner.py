"""How a worker runs a Django task: the litejobs task registered for it calls this runner.

Around each job: ``close_old_connections`` (as Django does around a request: a connection
a database server closed, or one past ``CONN_MAX_AGE``, is not reused), the ``task_started``
and ``task_finished`` signals with the job's ``TaskResult``, and a ``TaskContext`` for a
``takes_context`` task. The runner re-raises the task's exception, so litejobs' own retry
rule and error recording apply unchanged. An ``async def`` task gets an ``async def`` runner:
it runs on the worker's event loop like any litejobs coroutine, and the parts that may touch
the ORM (signals, connection upkeep) run through ``sync_to_async``.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from litejobs.jobcontext import current_job

if TYPE_CHECKING:
    from litejobs.contrib.django.bridge import Bridge

__all__ = ["close_old_connections", "runner_for"]


def runner_for(bridge: Bridge, task: Any) -> Callable[..., Any]:
    """The function the litejobs task of Django ``task`` runs. Its signature is the task
    function's less ``context``, so enqueue checks a call as Django would make it."""
    name: str = task.module_path
    run: Callable[..., Any]
    if inspect.iscoroutinefunction(task.func):
        async def run(*args: Any, **kwargs: Any) -> Any:
            return await _run_async(bridge, name, args, kwargs)
    else:
        def run(*args: Any, **kwargs: Any) -> Any:
            return _run_sync(bridge, name, args, kwargs)
    signature = inspect.signature(task.func)
    params = list(signature.parameters.values())
    if task.takes_context:
        params = params[1:]
    setattr(run, "__signature__", signature.replace(parameters=params))  # noqa: B010
    run.__module__ = task.func.__module__
    run.__qualname__ = run.__name__ = task.func.__qualname__
    run.__doc__ = task.func.__doc__
    return run


def _started(bridge: Bridge, name: str, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """Before the task: fresh connections, the job's TaskResult (RUNNING), task_started."""
    from django.tasks.signals import task_started

    from litejobs.contrib.django.backend import LitejobsBackend
    from litejobs.contrib.django.results import running_result

    close_old_connections()
    task = bridge.django_tasks[name]
    result = running_result(bridge, task, current_job().id, args, kwargs)
    task_started.send(sender=LitejobsBackend, task_result=result)
    return task, result


def _finished(result: Any, exc: BaseException | None, value: Any = None) -> None:
    """After the task: the TaskResult as this attempt ended, task_finished, and the
    connections the task used given back."""
    from django.tasks.base import TaskError, TaskResultStatus
    from django.tasks.signals import task_finished
    from django.utils import timezone

    from litejobs.contrib.django.backend import LitejobsBackend

    try:
        object.__setattr__(result, "finished_at", timezone.now())
        if exc is None:
            object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
            object.__setattr__(result, "_return_value", value)
        else:
            kind = type(exc)
            result.errors.append(TaskError(
                exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                traceback="".join(traceback.format_exception(exc))))
            object.__setattr__(result, "status", TaskResultStatus.FAILED)
        task_finished.send(sender=LitejobsBackend, task_result=result)
    finally:
        close_old_connections()


def close_old_connections() -> None:
    """Django's ``close_old_connections``, as around a request, except for a connection in
    a transaction: a job run inside a caller's ``atomic`` block (``litejobs.testing`` in a
    Django TestCase, whose test is one transaction) keeps it. A worker has none open."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def _run_sync(bridge: Bridge, name: str, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
    from django.utils.json import normalize_json

    task, result = _started(bridge, name, args, kwargs)
    try:
        lead = _context(task, result)
        value = normalize_json(task.func(*lead, *args, **kwargs))
    except BaseException as exc:
        _finished(result, exc)
        raise
    _finished(result, None, value)
    return value


async def _run_async(bridge: Bridge, name: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
    from asgiref.sync import sync_to_async
    from django.utils.json import normalize_json

    task, result = await sync_to_async(_started)(bridge, name, args, kwargs)
    try:
        lead = _context(task, result)
        value = normalize_json(await task.func(*lead, *args, **kwargs))
    except BaseException as exc:
        await sync_to_async(_finished)(result, exc)
        raise
    await sync_to_async(_finished)(result, None, value)
    return value


def _context(task: Any, result: Any) -> tuple[Any, ...]:
    if not task.takes_context:
        return ()
    from django.tasks.base import TaskContext

    return (TaskContext(task_result=result),)
