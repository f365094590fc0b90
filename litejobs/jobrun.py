"""One attempt in a worker: its context, and how its end becomes its outcome frame.

Shared by the worker's loop of sync jobs (``litejobs.worker.run_job``) and its coroutines
(``litejobs.aioworker``), so both report a result, an exception, a retry and a
``litejobs.then`` the same way.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from litejobs import protocol
from litejobs import retry as retry_rule
from litejobs.job import to_datetime
from litejobs.jobcontext import JobContext, ProgressReport
from litejobs.protocol import JobMessage
from litejobs.serialization import dump_result
from litejobs.workflows import Then, then_jobs

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.task import Task

__all__ = ["MAX_ERROR", "MAX_TRACEBACK", "context", "failed", "refused", "succeeded"]

MAX_ERROR = 4096
MAX_TRACEBACK = 65536


def refused(app: App, msg: JobMessage) -> bytes | None:
    """The failure of a job that cannot run here (unknown task, unusable arguments); None
    when it can run."""
    if msg.task not in app.tasks:
        known = ", ".join(sorted(app.tasks)) or "none"
        error = (f"unknown task {msg.task!r}: this worker's app has no task of that name "
                 f"(registered: {known}). Register it with @app.task in the app `litejobs run` "
                 "loads, or cancel the job")
        return protocol.outcome_failed(msg.id, msg.attempt, error, None, False, None)
    if msg.problem is not None:
        return protocol.outcome_failed(msg.id, msg.attempt, msg.problem, None, False, None)
    return None


def context(task: Task[Any, Any], msg: JobMessage,
            send: Callable[[bytes], None] | None) -> tuple[JobContext, ProgressReport]:
    """What ``current_job()`` returns inside the attempt, and its progress on the way."""
    scheduled = to_datetime(msg.scheduled_at)
    assert scheduled is not None
    msg.began = time.perf_counter()
    report = ProgressReport(msg.id, msg.attempt, send)
    return JobContext(msg.id, task.name, msg.attempt, msg.queue, scheduled, msg.max_attempts,
                      report, msg.results), report


def succeeded(app: App, msg: JobMessage, value: Any) -> bytes:
    """The outcome of an attempt that returned ``value`` (raises what cannot be sent: call it
    where the task's own exceptions are caught)."""
    if type(value) is Then:  # its children and continuation go with its success
        return protocol.outcome_then(msg.id, msg.attempt, *then_jobs(app, value, app.clock()))
    result = dump_result(value)
    size = len(result) if result.isascii() else len(result.encode())
    if size > app.max_payload:
        return protocol.outcome_failed(
            msg.id, msg.attempt,
            f"ResultTooLarge: the task's result takes {size} bytes as JSON, over the cap "
            f"of {app.max_payload} bytes (max_payload); store large results elsewhere (a "
            "file, a table) and return where to find them", None, False, None)
    return protocol.outcome_ok(msg.id, msg.attempt, result, _took(msg))


def failed(task: Task[Any, Any], msg: JobMessage, exc: BaseException) -> bytes:
    """The outcome of an attempt that raised ``exc``, under the one retry rule
    (``litejobs.retry``, as the supervisor and ``litejobs.testing`` apply it)."""
    retry = retry_rule.retryable(task, type(exc))
    delay = retry_rule.delay(task, msg.attempt - msg.interrupts, exc) if retry else None
    tb = "".join(traceback.format_exception(exc))
    if len(tb) > MAX_TRACEBACK:
        tb = tb[-MAX_TRACEBACK:]
    return protocol.outcome_failed(msg.id, msg.attempt, error_text(exc), tb, retry, delay,
                                   _took(msg))


def _took(msg: JobMessage) -> float:
    """Seconds the attempt has run in this worker (0.0 when it never began)."""
    return time.perf_counter() - msg.began if msg.began else 0.0


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__qualname__}: {exc}"
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 3] + "..."
