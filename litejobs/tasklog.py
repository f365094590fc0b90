"""A task's own ``logging`` records, sent from its worker to the supervisor's log.

``install`` (in the worker, before the app is imported) puts a ``TaskLogHandler`` on the root
logger at the supervisor's ``--log-level``, and sets the root logger to that level: a record
under it is never even made. Each record goes as one ``protocol.task_log`` frame on the
worker's pipe, with the job it was logged in (none for a record logged at import, or from a
thread the task started), and the supervisor logs it again (``litejobs.logs.task_record``).

Bounded so a task that logs in a loop cannot crowd out outcome frames: at most ``RATE``
records a second per worker; the rest are counted and dropped, and one line says how many.
A record's text is cut at ``MAX_TEXT`` characters, with a note that it was.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from litejobs import protocol
from litejobs.jobcontext import current

__all__ = ["MAX_TEXT", "RATE", "TaskLogHandler", "install", "settle"]

#: A record's text (message and traceback) is cut to this many characters.
MAX_TEXT = 8192
#: Records a second a worker sends at most; more are dropped and counted.
RATE = 200

_handler: TaskLogHandler | None = None
_FORMATTER = logging.Formatter()  # (for tracebacks)


class TaskLogHandler(logging.Handler):
    """Sends each record it handles to the supervisor (``send`` writes one frame)."""

    def __init__(self, send: Callable[[bytes], None], level: int) -> None:
        super().__init__(level)
        self.send = send
        self.window = 0.0  # monotonic start of the current second
        self.sent = 0  # records sent in it
        self.dropped = 0  # records dropped since the last notice
        self.pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        # (logging holds this handler's lock around emit: the counters need no other)
        now = time.monotonic()
        if now - self.window >= 1.0:
            self.window = now
            self.sent = 0
            if self.dropped:
                self._notice()
        if self.sent >= RATE:
            self.dropped += 1
            return
        self.sent += 1
        try:
            text = record.getMessage()
            if record.exc_info:
                text = f"{text}\n{_FORMATTER.formatException(record.exc_info)}"
            elif record.exc_text:
                text = f"{text}\n{record.exc_text}"
            if record.stack_info:
                text = f"{text}\n{record.stack_info}"
        except Exception:
            self.handleError(record)
            return
        self._send(record.levelno, record.name, record.created, text)

    def settle(self) -> None:
        """Say how many records were dropped, if any (at the end of each job)."""
        if self.dropped:
            self.acquire()
            try:
                self._notice()
            finally:
                self.release()

    def _notice(self) -> None:
        n, self.dropped = self.dropped, 0
        self._send(logging.WARNING, "root", time.time(),
                   f"dropped {n} log record{'s' if n != 1 else ''} of this task: over "
                   f"{RATE} a second")

    def _send(self, level: int, name: str, created: float, text: str) -> None:
        if os.getpid() != self.pid:
            return  # a process the task forked: its writes could split the worker's frames
        if len(text) > MAX_TEXT:
            text = (f"{text[:MAX_TEXT]} [cut: the record had {len(text)} characters, "
                    f"{MAX_TEXT} are sent]")
        ctx = current.get()
        if ctx is None:
            frame = protocol.task_log(0, 0, "", level, name, created, text)
        else:
            frame = protocol.task_log(ctx.id, ctx.attempt, ctx.task, level, name, created,
                                      text)
        self.send(frame)


def install(send: Callable[[bytes], None], level: int) -> TaskLogHandler:
    """Send this process's logging records at ``level`` and above to the supervisor, in place
    of any other root handler (an app's ``logging.basicConfig`` then does nothing: its
    records already reach the supervisor's log)."""
    global _handler
    handler = TaskLogHandler(send, level)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    _handler = handler
    return handler


def settle() -> None:
    """The end of a job: say how many of its records were dropped, if any."""
    if _handler is not None and _handler.dropped:
        _handler.settle()
