"""Several coroutines at once in one worker: ``async def`` jobs on its event loop.

When the worker's next job is a coroutine's, ``serve`` runs it on the worker's event loop and
goes on taking jobs while it runs: the loop reads the supervisor's pipe (``add_reader``), so
jobs, revokes and cancels arrive while coroutines await. It begins the jobs at the front of
the worker's inbox, in the order sent, while they are coroutines and fewer than
``async_concurrency`` run; a sync job at the front waits until every coroutine is done, and
then ``serve`` returns and the worker's sync loop runs it alone. The supervisor applies the
same rule (``Dispatcher.admit``) to know which jobs have begun without being told.

Each coroutine runs in an asyncio Task with a context of its own, where its job's
``current_job()`` is set; its progress goes through its own ``ProgressReport``. Its timeout
(from the job frame) cancels it a little before the supervisor's hard stop
(``aio.soft_timeout``): ``JobTimeout``, and the others run on. A cancel frame (the job was
cancelled or taken over) cancels it the same way; its outcome still goes, to free its place.
"""

from __future__ import annotations

import asyncio
import contextvars
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from litejobs import aio, jobrun, protocol, tasklog, tracing
from litejobs.jobcontext import ProgressReport, current
from litejobs.protocol import JobMessage

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.task import Task
    from litejobs.worker import _Inbox

from litejobs.worker import _not_the_worker

__all__ = ["serve"]


def serve(app: App, inbox: _Inbox, first: JobMessage, coroutines: set[str],
          concurrency: int) -> None:
    """Run ``first`` (a coroutine's job) and every coroutine's job that follows it, up to
    ``concurrency`` at once; return once none runs and the next job (if any) is sync."""
    loop = aio.worker_loop()
    runner = _Runner(app, inbox, coroutines, concurrency, loop)
    inbox.on_cancel = runner.cancel
    loop.add_reader(inbox.fd, runner.readable)
    try:
        loop.run_until_complete(runner.serve(first))
    finally:
        if runner.reading:
            loop.remove_reader(inbox.fd)
        inbox.on_cancel = None


class _Runner:
    """The coroutines one ``serve`` runs, keyed by (job id, attempt)."""

    def __init__(self, app: App, inbox: _Inbox, coroutines: set[str], concurrency: int,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.inbox = inbox
        self.send = inbox.channel.send
        self.coroutines = coroutines
        self.concurrency = concurrency
        self.loop = loop
        self.tasks: dict[tuple[int, int], asyncio.Task[bytes]] = {}
        self.reports: dict[tuple[int, int], ProgressReport] = {}
        self.cancelled: set[tuple[int, int]] = set()
        self.changed = asyncio.Event()
        self.reading = True
        self.flusher: asyncio.TimerHandle | None = None

    async def serve(self, first: JobMessage) -> None:
        self.start(first)
        self.flusher = self.loop.call_later(protocol.PROGRESS_INTERVAL, self.flush)
        try:
            while True:
                self.admit()
                if not self.tasks:
                    return
                await self.changed.wait()
                self.changed.clear()
        finally:
            self.flusher.cancel()

    def admit(self) -> None:
        """Begin the coroutines' jobs at the front of the inbox while there is room."""
        pending = self.inbox.pending
        while (pending and len(self.tasks) < self.concurrency
               and pending[0].task in self.coroutines):
            self.start(pending.popleft())

    def start(self, msg: JobMessage) -> None:
        refusal = jobrun.refused(self.app, msg)
        if refusal is not None:  # ends at once: its place is free again as it is sent
            self.send(refusal)
            return
        key = (msg.id, msg.attempt)
        # a context of its own: current_job() and the tracing span are this job's
        task = self.loop.create_task(self._attempt(msg, self.app.tasks[msg.task]),
                                     context=contextvars.copy_context())
        self.tasks[key] = task
        task.add_done_callback(lambda t: self._ended(key, t))

    async def _attempt(self, msg: JobMessage, task: Task[Any, Any]) -> bytes:
        key = (msg.id, msg.attempt)
        ctx, report = jobrun.context(task, msg, self.send)
        current.set(ctx)
        self.reports[key] = report
        span = None if msg.trace is None else tracing.run_span(msg)
        try:
            value = task.fn(*msg.args, **msg.kwargs)
            if type(value) is CoroutineType:
                value = await aio.bounded(value, msg.attempt, msg.timeout)
            _not_the_worker()
            return jobrun.succeeded(self.app, msg, value)
        except BaseException as exc:  # its SystemExit is its failure, not the worker's exit
            _not_the_worker()
            if key in self.cancelled:
                return protocol.outcome_failed(msg.id, msg.attempt, "JobCancelled: cancelled "
                                               "while running", None, False, None)
            if span is not None:
                span.fail(exc)
            return jobrun.failed(task, msg, exc)
        finally:
            if span is not None:
                span.end()
            tasklog.settle()
            del self.reports[key]
            report.flush(close=True)  # the newest progress goes before the outcome

    def _ended(self, key: tuple[int, int], task: asyncio.Task[bytes]) -> None:
        del self.tasks[key]
        self.cancelled.discard(key)
        if task.cancelled():  # cancelled before its first step: nothing of it ran
            self.send(protocol.outcome_failed(key[0], key[1], "JobCancelled: cancelled "
                                              "before it started", None, False, None))
        else:
            self.send(task.result())
        self.changed.set()

    def readable(self) -> None:
        """The supervisor's pipe has something: take it in (jobs, revokes, cancels)."""
        self.inbox.poll()
        if self.inbox.eof:  # a closed pipe stays readable: stop watching it
            self.loop.remove_reader(self.inbox.fd)
            self.reading = False
        self.changed.set()

    def cancel(self, wanted: set[tuple[int, int]]) -> None:
        """Cancel the running coroutines of these jobs (no longer ours)."""
        for key in wanted:
            task = self.tasks.get(key)
            if task is not None:
                self.cancelled.add(key)
                task.cancel()

    def flush(self) -> None:
        """Send the newest progress of coroutines that went quiet (as the heartbeat thread
        does for a sync job)."""
        for report in list(self.reports.values()):
            report.flush(due_only=True)
        self.flusher = self.loop.call_later(protocol.PROGRESS_INTERVAL, self.flush)
