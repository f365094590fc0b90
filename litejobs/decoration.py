"""``@app.task(...)``: its options checked when the decorator is made, the task's name."""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.redact import check_redact
from litejobs.task import Backoff, TaskOptions
from litejobs.validate import (
    INT64_MAX,
    check_flow_rate,
    check_int,
    check_name,
    check_priority,
    check_retries,
    check_seconds,
    check_tags,
    merge_flow_key,
)

if TYPE_CHECKING:
    from litejobs.task import Task

__all__ = ["check_new_task", "task_defaults", "task_name"]


def task_defaults(
    *, queue: str, priority: int, retries: int, timeout: float | None,
    backoff: Backoff | None, retry_on: type[BaseException] | tuple[type[BaseException], ...],
    unique_for: float | None, concurrency_key: str | Callable[..., str] | None,
    concurrency_limit: int | None, tags: Sequence[str] | None, redact: Sequence[str] | None,
    flow_key: str | Callable[..., str] | None, rate_limit: str | None,
) -> Callable[[str], TaskOptions]:
    """Check the options of ``@app.task(...)`` (ValueError/TypeError naming the bad one, at
    decoration, not at the first enqueue); returns what makes a task's TaskOptions from its
    name."""
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    if not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on):
        raise TypeError(f"retry_on must be exception classes, not {retry_on!r}")
    check_name("queue", queue)
    check_priority(priority)
    check_retries(retries)
    if timeout is not None:
        check_seconds("timeout", timeout, allow_zero=False)
    if unique_for is not None:
        check_seconds("unique_for", unique_for, allow_zero=False)
    if concurrency_limit is not None:
        check_int("concurrency_limit", concurrency_limit, 1, INT64_MAX)
    flow_rate = None if rate_limit is None else check_flow_rate(rate_limit)
    key = merge_flow_key(flow_key, concurrency_key, "@app.task")
    task_tags = () if tags is None else tuple(json.loads(check_tags(tags) or "[]"))
    check_redact(redact)
    errors = tuple(retry_on)

    def defaults(name: str) -> TaskOptions:
        return TaskOptions(
            name=name, queue=queue, priority=priority, retries=retries,
            timeout=None if timeout is None else float(timeout),
            backoff=backoff or Backoff(), retry_on=errors, unique_for=unique_for,
            concurrency_key=key, concurrency_limit=concurrency_limit,
            flow_rate=flow_rate, tags=task_tags,
        )

    return defaults


def task_name(func: Callable[..., Any], name: str | None) -> str:
    """``name``, or the function's module and qualified name (a script's module by its file
    name, not ``__main__``, so its workers, which import it by name, agree)."""
    module = func.__module__
    if module == "__main__":
        module = _main_module_name()
    return check_name("task name", name or f"{module}.{func.__qualname__}")


def _main_module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)
    path = getattr(main, "__file__", None)
    return os.path.splitext(os.path.basename(path))[0] if path else "__main__"


def check_new_task(tasks: Mapping[str, Task[Any, Any]],
                   origins: MutableMapping[tuple[str, str], str], name: str,
                   func: Callable[..., Any], *, named: bool) -> None:
    """Refuse (ValueError, one line saying what happened) a registration that would leave a
    name nobody runs: another function under a taken name, the same function's file imported
    twice under two module names with derived names (the producer enqueues one name, the
    workers know the other), or its module run twice (a reload)."""
    existing = tasks.get(name)
    origin = _origin(func)
    if existing is not None and existing.fn is not func and (
        getattr(existing.fn, "__code__", None) is not getattr(func, "__code__", None)
    ):
        if origin is None or origin != _origin(existing.fn) or "<locals>" in origin[1]:
            raise ValueError(f"a task named {name!r} is already registered (by "
                             f"{existing.fn!r}); give one of them another name=")
        if existing.fn.__module__ == func.__module__:
            raise ValueError(
                f"task {name!r} is registered again by a second copy of the same function "
                f"({origin[0]}): its module {func.__module__} ran twice in this process "
                "(importlib.reload); tasks register once per App: load the module once")
        # The same source under one name (given, or __main__ and its module name): whichever
        # copy runs, producers and workers agree.
    if named or origin is None:
        return
    other = origins.setdefault(origin, name)
    if other != name and other in tasks:
        raise ValueError(
            f"{origin[1]} in {origin[0]} is registered as {other!r} and as {name!r}: the file "
            "was imported twice under two module names (e.g. `cd myapp && python web.py` "
            "imports `tasks` and `myapp.tasks`), so producers and workers disagree on the "
            "name; import it one way (run from the project root) or give the task an "
            "explicit name=")


def _origin(func: Callable[..., Any]) -> tuple[str, str] | None:
    """The defining file and qualified name of a function (decorators unwrapped), which stay
    the same however its module was imported."""
    try:
        inner = inspect.unwrap(func)
    except ValueError:
        return None
    code = getattr(inner, "__code__", None)
    qualname = getattr(inner, "__qualname__", None)
    if code is None or not isinstance(qualname, str):
        return None
    return os.path.realpath(code.co_filename), qualname
