"""What a running task knows of its job (``current_job()``), and its progress reports.

``JobContext`` is the task's view; ``ProgressReport`` carries its progress and metadata to
the supervisor (see ``litejobs.worker``, which runs jobs).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from litejobs import protocol
from litejobs.validate import check_metadata, check_progress

__all__ = ["JobContext", "ProgressReport", "current", "current_job"]


class ProgressReport:
    """A running job's progress and metadata on their way to the supervisor: the newest
    values wait here and go at most every ``PROGRESS_INTERVAL`` (the task's call, or the
    heartbeat thread's tick, sends them when due), and always before the outcome."""

    __slots__ = ("attempt", "closed", "dirty", "fraction", "id", "lock", "message", "meta",
                 "meta_text", "send", "sent_at")

    def __init__(self, job_id: int, attempt: int,
                 send: Callable[[bytes], None] | None) -> None:
        self.id = job_id
        self.attempt = attempt
        self.send = send
        self.lock = threading.Lock()  # the task's thread and the heartbeat thread
        self.fraction: float | None = None
        self.message: str | None = None
        self.meta: dict[str, Any] = {}
        self.meta_text: str | None = None
        self.dirty = False
        self.closed = False
        self.sent_at = -protocol.PROGRESS_INTERVAL

    def progress(self, fraction: float, message: str | None) -> None:
        with self.lock:
            self.fraction = fraction
            self.message = message
            self.dirty = True
            now = time.monotonic()
            if now - self.sent_at >= protocol.PROGRESS_INTERVAL:
                self._send(now)

    def metadata(self, values: dict[str, Any]) -> None:
        with self.lock:
            text = check_metadata(self.meta, values)
            self.meta = {**self.meta, **values}
            self.meta_text = text
            self.dirty = True
            now = time.monotonic()
            if now - self.sent_at >= protocol.PROGRESS_INTERVAL:
                self._send(now)

    def flush(self, *, due_only: bool = False, close: bool = False) -> None:
        if not self.dirty:  # most jobs never report: no lock (a racing report sends itself)
            self.closed = self.closed or close
            return
        with self.lock:
            now = time.monotonic()
            if self.dirty and (not due_only or now - self.sent_at >= protocol.PROGRESS_INTERVAL):
                self._send(now)
            self.closed = self.closed or close

    def _send(self, now: float) -> None:
        if self.send is None or self.closed:
            return
        self.send(protocol.progress(self.id, self.attempt, self.fraction, self.message,
                                    self.meta_text))
        self.dirty = False
        self.sent_at = now


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running task may know about its own job, and how it reports progress."""

    id: int
    task: str
    attempt: int
    queue: str
    scheduled_at: datetime
    max_attempts: int
    _progress: ProgressReport | None = field(default=None, repr=False, compare=False)
    _results: list[Any] | None = field(default=None, repr=False, compare=False)

    def results(self) -> list[Any]:
        """The results of the steps this workflow step waited on, in the order of its
        ``after`` (a token's: its data); ``[]`` for a job that waited on nothing."""
        return list(self._results or ())

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job is: ``fraction`` from 0 to 1, an optional message of at
        most 200 characters. Cheap (a few µs): call it as often as you like; the newest
        value reaches the database within about half a second (``job.progress``)."""
        fraction, message = check_progress(fraction, message)
        if self._progress is not None:
            self._progress.progress(fraction, message)

    def set_metadata(self, **values: Any) -> None:
        """Merge ``values`` (JSON values) into the job's metadata (``job.metadata``): a key
        set again replaces its value. Refused (ValueError) past 64 KiB of JSON per attempt.
        Merged into what earlier attempts stored as a JSON merge patch (RFC 7396)."""
        if self._progress is not None:
            self._progress.metadata(values)
        else:
            check_metadata({}, values)


current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "litejobscurrent_job", default=None
)


def current_job() -> JobContext:
    """The job this task is running as; raises ``RuntimeError`` outside a running task."""
    ctx = current.get()
    if ctx is None:
        raise RuntimeError(
            "litejobs.current_job() is only available inside a task run by a litejobs worker; "
            "this code is not running as a job"
        )
    return ctx
