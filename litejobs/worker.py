"""The worker process: receive a job from the supervisor, run it, report the outcome.

A worker is started by the supervisor as a fresh interpreter (``python -c …``, so it never
inherits a SQLite connection) and talks to it over two pipes in the frames of
``litejobs.protocol`` (jobs, revokes and cancels in; ready, outcomes, revoked and heartbeats
out). It runs one sync job at a time in this loop; ``async def`` jobs run several at once on
its event loop (``litejobs.aioworker``), and a sync job waits until they are done.

The worker holds no connection: the supervisor claims, renews leases and records outcomes, so
a frozen worker simply stops heartbeating and loses its lease. The worker exits by itself when
the supervisor disappears (its input pipe closes, its parent changes, or PDEATHSIG). A process a
task forks that returns into this code is not the worker: it exits at once, before it could
read or write the worker's pipes.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from litejobs import jobrun, protocol, tasklog, tracing
from litejobs.aio import is_async
from litejobs.jobcontext import JobContext, ProgressReport, current, current_job
from litejobs.protocol import JobMessage

if TYPE_CHECKING:
    from litejobs.app import App

__all__ = ["JobContext", "current_job", "load_app", "main"]

HEARTBEAT = 1.0
#: After a job that ran this long (seconds), look for a revoke before starting the next one:
#: the supervisor only takes jobs back from a worker busy for longer (``REVOKE_AFTER``).
CHECK_AFTER = 0.001
#: How many times per heartbeat the heartbeat thread looks for a revoke during a long job.
WATCHES = 4


def load_app(spec: str) -> App:
    """Import ``"package.module:attr"`` (or ``"path/to/file.py:attr"``) and return the App."""
    import importlib
    import importlib.util

    from litejobs.app import App
    from litejobs.errors import ConfigError

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"app {spec!r} must look like 'package.module:attribute'")
    try:
        if module_name.endswith(".py"):
            path = os.path.abspath(module_name)
            name = os.path.splitext(os.path.basename(path))[0]
            if name in sys.modules and getattr(sys.modules[name], "__file__", None) == path:
                module = sys.modules[name]
            else:
                sys.path.insert(0, os.path.dirname(path))
                module = importlib.import_module(name)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import app {spec!r}: {exc}. Run from your project's directory, or fix "
            "the 'app' setting (--app, LITEJOBS_APP or app = in litejobs.toml)"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"app {spec!r}: module {module_name!r} has no attribute {attr!r}")
    if not isinstance(obj, App):
        raise ConfigError(f"app {spec!r} is a {type(obj).__name__}, not a litejobs.App")
    return obj


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass


class _Channel:
    """The worker's sending end; writes are serialised between the two threads."""

    def __init__(self, write_fd: int) -> None:
        self.write_fd = write_fd
        self.lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self.lock:
            view = memoryview(data)
            while view:
                try:
                    n = os.write(self.write_fd, view)
                except BrokenPipeError:
                    os._exit(0)  # the supervisor is gone: nobody to report to
                view = view[n:]


class _Inbox:
    """The worker's end of the supervisor's pipe: jobs in the order they were sent, less
    those the supervisor takes back with a revoke before they start.

    The main thread takes jobs (``next``) and runs them; while one runs long, the heartbeat
    thread reads on (``watch``), so a revoke is answered during the job, not after it.
    """

    def __init__(self, fd: int, channel: _Channel) -> None:
        self.fd = fd
        self.channel = channel
        self.lock = threading.Lock()  # held by whoever reads the pipe
        self.reader = protocol.Reader()
        self.pending: deque[JobMessage] = deque()
        self.eof = False
        self.started = 0  # jobs started so far
        self.running = False
        #: While coroutines run: cancels those of these (id, attempt) (``aioworker``).
        self.on_cancel: Callable[[set[tuple[int, int]]], None] | None = None

    def next(self) -> JobMessage | None:
        """The next job; None once the supervisor is gone and none is left."""
        with self.lock:
            while not self.pending:
                if self.eof:
                    return None
                self._read()  # blocks until the supervisor sends something
            return self.pending.popleft()

    def poll(self) -> None:
        """Take in what the supervisor sent meanwhile, without waiting."""
        with self.lock:
            self._read_ready()

    def watch(self, seen: int) -> None:
        """From the heartbeat thread: if job number ``seen`` is still running, read on. Never
        waits for the lock: the main thread holds it only to take its next job."""
        if self.running and self.started == seen and self.lock.acquire(blocking=False):
            try:
                self._read_ready()
            finally:
                self.lock.release()

    def _read_ready(self) -> None:
        if not self.eof and select.select([self.fd], [], [], 0)[0]:
            self._read()  # readable: returns at once

    def _read(self) -> None:
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            self.eof = True
            return
        for payload in self.reader.feed(chunk):
            try:
                msg = protocol.decode_job(payload)
            except protocol.ProtocolError as exc:
                # Only a broken supervisor sends this; its jobs are returned when we are gone.
                raise SystemExit(f"litejobs worker: {exc}") from None
            if isinstance(msg, JobMessage):
                self.pending.append(msg)
            elif isinstance(msg, list):
                self._revoke(set(msg))
            else:
                self._cancel(set(msg.pairs))

    def _cancel(self, wanted: set[tuple[int, int]]) -> None:
        """Jobs no longer ours that the supervisor counts as begun: one not started ends
        here (its outcome, which the supervisor drops, frees its place); a running coroutine
        is cancelled."""
        kept: deque[JobMessage] = deque()
        for job in self.pending:
            if (job.id, job.attempt) in wanted:
                self.channel.send(protocol.outcome_failed(
                    job.id, job.attempt, "JobCancelled: cancelled before it started", None,
                    False, None))
            else:
                kept.append(job)
        self.pending = kept
        if self.on_cancel is not None:
            self.on_cancel(wanted)

    def _revoke(self, wanted: set[tuple[int, int]]) -> None:
        kept: deque[JobMessage] = deque()
        given: list[tuple[int, int]] = []
        for job in self.pending:
            if (job.id, job.attempt) in wanted:
                given.append((job.id, job.attempt))
            else:
                kept.append(job)
        self.pending = kept
        self.channel.send(protocol.revoked(given))


def _heartbeat(channel: _Channel, parent: int, inbox: _Inbox) -> None:
    ticks = 0
    seen = -1
    while True:
        time.sleep(HEARTBEAT / WATCHES)
        if os.getppid() != parent:
            os._exit(0)
        # A job still running since the last tick has run at least a tick: the supervisor
        # may want back the jobs sent ahead behind it.
        inbox.watch(seen)
        seen = inbox.started
        live = _live
        if live is not None:
            live.flush(due_only=True)  # the newest progress of a task that went quiet
        ticks += 1
        if ticks % WATCHES == 0:
            channel.send(protocol.HEARTBEAT)


#: The pid of this worker process; a process a task forks has another one.
_worker_pid: int | None = None


def _not_the_worker() -> None:
    """A child a task forked that returned into the worker's code: end it before it reads or
    writes the worker's pipes (its outcome would interleave with the worker's)."""
    if _worker_pid is not None and os.getpid() != _worker_pid:
        os._exit(0)


#: The running job's progress, for the heartbeat thread to send when it is due.
_live: ProgressReport | None = None


def run_job(app: App, msg: JobMessage, send: Callable[[bytes], None] | None = None) -> bytes:
    """Run one job and return the outcome frame. ``send`` takes the job's progress frames
    (all sent before this returns); without it, progress is checked and dropped."""
    global _live
    task = app.tasks.get(msg.task)
    if task is None or msg.problem is not None:
        refusal = jobrun.refused(app, msg)
        assert refusal is not None
        return refusal
    ctx, report = jobrun.context(task, msg, send)
    span = None if msg.trace is None else tracing.run_span(msg)
    token = current.set(ctx)
    _live = report
    try:
        value = task.fn(*msg.args, **msg.kwargs)
        if type(value) is CoroutineType:  # an async def task: run on this worker's loop
            from litejobs import aio

            value = aio.run(value, msg.attempt, msg.timeout)
        _not_the_worker()
        return jobrun.succeeded(app, msg, value)
    except BaseException as exc:  # a task's SystemExit is its failure, not the worker's exit
        _not_the_worker()
        if span is not None:
            span.fail(exc)
        return jobrun.failed(task, msg, exc)
    finally:
        if span is not None:
            span.end()
        tasklog.settle()  # how many of its records were dropped, said as its own
        current.reset(token)
        _live = None
        report.flush(close=True)  # the newest progress goes before the outcome


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process; argv is ``SPEC READ_FD WRITE_FD``. Its tasks'
    records at ``LITEJOBS_LOG_LEVEL`` (from the supervisor) and above go to the supervisor;
    it runs up to ``LITEJOBS_ASYNC_CONCURRENCY`` coroutines at once."""
    argv = sys.argv[1:] if argv is None else argv
    spec, read_fd, write_fd = argv[0], int(argv[1]), int(argv[2])
    concurrency = int(os.environ.pop("LITEJOBS_ASYNC_CONCURRENCY", 16))
    level = int(os.environ.pop("LITEJOBS_LOG_LEVEL", logging.WARNING))
    parent = os.getppid()
    # The supervisor decides when a worker stops: a terminal's Ctrl-C or a group-wide SIGTERM
    # must not kill a task halfway, so both are ignored here and the supervisor drains.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != parent:
        return 0
    path = os.environ.get("LITEJOBS_SYS_PATH")
    if path:
        sys.path[:] = json.loads(path)
    global _worker_pid
    _worker_pid = os.getpid()
    channel = _Channel(write_fd)
    tasklog.install(channel.send, level)  # before the app: its import may log too
    app = load_app(spec)
    inbox = _Inbox(read_fd, channel)
    threading.Thread(target=_heartbeat, args=(channel, parent, inbox), daemon=True,
                     name="litejobs-heartbeat").start()
    channel.send(protocol.ready(os.getpid()))
    coroutines = {name for name, task in app.tasks.items() if is_async(task)}
    while (msg := inbox.next()) is not None:
        if msg.task in coroutines:  # it and the coroutines after it run on the event loop
            from litejobs import aioworker

            aioworker.serve(app, inbox, msg, coroutines, concurrency)
            continue
        inbox.started += 1
        inbox.running = True
        started = time.monotonic()
        outcome = run_job(app, msg, channel.send)
        inbox.running = False
        channel.send(outcome)
        if time.monotonic() - started >= CHECK_AFTER:
            inbox.poll()  # a revoke sent while this job ran is seen before the next starts
    return 0
