"""The supervisor's log: its two formats, its level, and the lines about jobs.

``litejobs run --log-format text|json --log-level debug|info|warning`` calls ``setup``. Every
line goes to stderr. Text lines read ``<time> litejobs[<pid>] <LEVEL> <message>``; json lines
are one object each with ``time`` (ISO-8601, UTC), ``level``, ``logger``, ``message`` and, for
a line about a job, ``job``, ``task`` and ``attempt`` (given to the logging call as
``extra=``; ``JOB_FIELDS`` lists every such field).

A task's own records come from its worker (``litejobs.tasklog``) and are logged again here on
``litejobs.task.<its logger's name>`` (``litejobs.task`` for the root logger), with the job
they were logged in.

Lines under WARNING are written to a buffer and the buffer to stderr by the supervisor's loop
(``flush``): before it sleeps, and at most every ``FLUSH_EVERY`` while it is busy; one write for
many lines instead of one per line, since a busy supervisor logs a line per job.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
from typing import IO, Any

__all__ = ["FORMATS", "JOB_FIELDS", "LEVELS", "TASK_LOGGER", "JsonFormatter", "TextFormatter",
           "flush", "parse_level", "setup", "task_record"]

#: ``--log-level`` names and their logging levels.
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
FORMATS = ("text", "json")
#: Fields a line about a job may carry (logging's ``extra=``); json lines include them.
JOB_FIELDS = ("job", "task", "attempt", "outcome", "duration", "retry_in", "error")
#: Tasks' own records are logged again under this logger.
TASK_LOGGER = "litejobs.task"
TEXT_FORMAT = "%(asctime)s litejobs[%(process)d] %(levelname)s %(message)s"

_JSON = json.JSONEncoder(ensure_ascii=False, default=str)  # (json.dumps makes one a call)
#: A busy supervisor's lines wait at most this long (seconds), or until this many characters
#: wait, before they are written.
FLUSH_EVERY = 0.1
FLUSH_SIZE = 1 << 16
#: The handler ``setup`` installed, flushed by ``flush``.
_handler: _TurnHandler | None = None


def parse_level(name: str) -> int:
    """A ``--log-level`` name as a logging level; ValueError naming the choices."""
    level = LEVELS.get(name.strip().lower())
    if level is None:
        raise ValueError(f"unknown log level {name!r}: use one of {', '.join(LEVELS)}")
    return level


class _Lines(logging.Formatter):
    """A formatter that also makes a line without a record (``job_lines``' fast lane)."""

    def __init__(self, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._second = -1
        self._stamp = ""

    def _time(self, created: float, pattern: str, local: bool) -> str:
        # strftime per line costs more than the rest of a line: once a second is enough
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(pattern, time.localtime(second) if local
                                        else time.gmtime(second))
        return self._stamp

    def line(self, level: int, name: str, message: str, fields: dict[str, Any],
             created: float) -> str:
        """The line (no newline) a record of these values would give."""
        raise NotImplementedError


class TextFormatter(_Lines):
    """Today's text lines; a task's own record also names its job and its logger."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._head = ("", -1, -1)  # the line's start before the message, and for when

    def formatTime(  # noqa: N802 (logging's name)
            self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return (f"{self._time(record.created, '%Y-%m-%d %H:%M:%S', True)},"
                f"{int(record.msecs):03d}")

    def line(self, level: int, name: str, message: str, fields: dict[str, Any],
             created: float) -> str:
        ms = int((created - int(created)) * 1000)
        head, at, lv = self._head
        if at != int(created) * 1000 + ms or lv != level:
            head = (f"{self._time(created, '%Y-%m-%d %H:%M:%S', True)},{ms:03d} "
                    f"litejobs[{os.getpid()}] {logging.getLevelName(level)} ")
            self._head = (head, int(created) * 1000 + ms, level)
        return head + message

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        name = record.name
        if name.startswith(TASK_LOGGER) and (len(name) == len(TASK_LOGGER)
                                             or name[len(TASK_LOGGER)] == "."):
            source = name[len(TASK_LOGGER) + 1:] or "root"
            job = getattr(record, "job", None)
            if job is not None:
                record.message = (f"job {job} ({getattr(record, 'task', '?')}, attempt "
                                  f"{getattr(record, 'attempt', '?')}) {source}: "
                                  f"{record.message}")
            else:
                record.message = f"{source}: {record.message}"
        return super().formatMessage(record)


class JsonFormatter(_Lines):
    """One JSON object a line: time, level, logger, message, the job's fields if any, and
    ``traceback`` when the record carries an exception."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return self.line(record.levelno, record.name, record.getMessage(), record.__dict__,
                         record.created, record.exc_text)

    def line(self, level: int, name: str, message: str, fields: dict[str, Any],
             created: float, traceback: str | None = None) -> str:
        ms = int((created - int(created)) * 1000)
        out: dict[str, Any] = {
            "time": f"{self._time(created, '%Y-%m-%dT%H:%M:%S', False)}.{ms:03d}Z",
            "level": logging.getLevelName(level),
            "logger": name,
            "message": message,
        }
        for key in JOB_FIELDS:
            value = fields.get(key)
            if value is not None:
                out[key] = value
        if traceback:
            out["traceback"] = traceback
        return _JSON.encode(out)


class _TurnHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Lines into a buffer; ``flush_turn`` writes them out together. A warning or worse, a
    line of another thread (a web server's), and any line while no loop flushes
    (``buffered`` is None), is written at once."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.buffer = io.StringIO()
        self.buffered: int | None = None  # the thread whose loop flushes
        self.flush_at = 0.0  # monotonic: a busy loop writes its lines from then

    def emit(self, record: logging.LogRecord) -> None:
        # (called with the handler's lock held: see logging.Handler.handle)
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        if (self.buffered is not None and record.levelno < logging.WARNING
                and threading.get_ident() == self.buffered):
            self.buffer.write(line)
            return
        self.acquire()
        try:
            self._write(self.buffer.getvalue() + line)
        finally:
            self.release()

    def flush_turn(self) -> None:
        if self.buffer.tell():
            self.acquire()
            try:
                self._write(self.buffer.getvalue())
            finally:
                self.release()

    def _write(self, text: str) -> None:
        self.buffer.seek(0)
        self.buffer.truncate()
        self.flush_at = time.monotonic() + FLUSH_EVERY
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # a closed stderr must not stop the supervisor
            pass

    def flush(self) -> None:
        self.flush_turn()
        super().flush()


def setup(fmt: str = "text", level: str | int = "info", stream: IO[str] | None = None,
          ) -> int:
    """Configure the root logger for ``litejobs run``: ``fmt`` ("text" or "json"), ``level``
    (a ``LEVELS`` name or a logging level). Returns the level, which workers get too."""
    global _handler
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use text or json")
    value = parse_level(level) if isinstance(level, str) else level
    handler = _TurnHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(value)
    # The supervisor's records need no thread or process name (documented switches; each
    # costs a lookup per record, and it logs a record per job).
    logging.logThreads = False
    logging.logMultiprocessing = False
    _handler = handler
    return value


def buffer_lines(on: bool) -> None:
    """Let lines under WARNING wait for ``flush`` (the supervisor's loop turns it on while
    it runs and calls ``flush`` before each wait)."""
    if _handler is not None:
        if not on:
            _handler.flush_turn()
        _handler.buffered = threading.get_ident() if on else None


def flush(idle: bool = True) -> None:
    """Write the lines waiting (a no-op without ``setup``): at once when the loop is about to
    sleep (``idle``), else once ``FLUSH_EVERY`` has passed or many lines wait (a busy loop
    turns hundreds of times a second: one write each would cost more than the lines)."""
    h = _handler
    if h is not None and h.buffer.tell() and (
            idle or h.buffer.tell() >= FLUSH_SIZE or time.monotonic() >= h.flush_at):
        h.flush_turn()


def job_lines(logger: logging.Logger, lines: list[tuple[int, str, dict[str, Any]]]) -> None:
    """Log each ``(level, message, fields)`` of ``lines`` on ``logger``: the lines of
    ``logger.log(level, message, extra=fields)``, but made straight into the turn's buffer
    when nothing else would see the records: no filter, no other handler (as under
    ``litejobs run``). A record costs more than the rest of a job's turn in the supervisor,
    which logs a line per job."""
    h = _handler
    if h is None or h.buffered != threading.get_ident() or not _direct(logger, h):
        for level, message, fields in lines:
            logger.log(level, "%s", message, extra=fields)
        return
    formatter = h.formatter
    assert isinstance(formatter, _Lines)
    now = time.time()
    out: list[str] = []
    for level, message, fields in lines:
        if level >= logging.WARNING:
            logger.log(level, "%s", message, extra=fields)
        elif logger.isEnabledFor(level):
            out.append(formatter.line(level, logger.name, message, fields, now))
    if out:
        out.append("")
        with h.lock:  # type: ignore[union-attr]
            h.buffer.write("\n".join(out))


def _direct(logger: logging.Logger, handler: _TurnHandler) -> bool:
    """Whether ``handler`` alone would see ``logger``'s records, unfiltered."""
    lg: logging.Logger | None = logger
    while lg is not None:
        if lg.filters:
            return False
        if lg.parent is None:  # the root
            return lg.handlers == [handler] and not handler.filters
        if lg.handlers or not lg.propagate:
            return False
        lg = lg.parent
    return False


def task_record(job: int | None, task: str | None, attempt: int | None, level: int,
                name: str, created: float, text: str) -> None:
    """Log a task's own record (sent by its worker) again here, with its job."""
    logger = logging.getLogger(TASK_LOGGER if name in ("", "root")
                               else f"{TASK_LOGGER}.{name}")
    if not logger.isEnabledFor(level):
        return
    extra = None if job is None else {"job": job, "task": task, "attempt": attempt}
    record = logger.makeRecord(logger.name, level, "(task)", 0, "%s", (text,), None,
                               extra=extra)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    logger.handle(record)
