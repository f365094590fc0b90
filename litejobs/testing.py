"""Helpers for your own tests: a clock you control, jobs run in the test's process, and
assertions on what was enqueued.

    from litejobs.testing import Clock, assert_enqueued, run_until_idle

    def test_signup_sends_mail(litejobs_app):       # the pytest plugin's fresh database
        clock = Clock().attach(litejobs_app)         # enqueues read the clock from now on
        signup("ada@example.com")                    # enqueues mail.send with a 60 s delay
        assert_enqueued(send_mail, args=["ada@example.com"])
        assert run_until_idle(litejobs_app, clock=clock).succeeded == 0   # not due yet
        clock.advance(60)
        assert run_until_idle(litejobs_app, clock=clock).succeeded == 1

Jobs run in this process, one at a time, through the same store, claim, worker code
(``litejobs.worker.run_job``), retry rule (``litejobs.retry``) and outcome records as under
``litejobs run`` — only without worker processes or hard timeouts. ``inline(app)`` runs each
job at its enqueue instead (Huey's immediate mode, Celery's eager mode).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litejobs import protocol, retry
from litejobs.app import App
from litejobs.job import Job
from litejobs.outcomes import _delay as reported_delay  # the supervisor's reading of it
from litejobs.store import QueueLimits, Row, Tx
from litejobs.task import Prepared
from litejobs.testcheck import assert_enqueued, enqueued_jobs, refute_enqueued
from litejobs.worker import run_job

__all__ = ["Clock", "RunReport", "assert_enqueued", "enqueued_jobs", "inline",
           "refute_enqueued", "run_until_idle"]

WORKER = "litejobs.testing:inline"


class Clock:
    """A clock you move by hand: ``clock()`` is the time, ``advance(s)`` moves it forward.

    ``Clock(start)`` stands still at ``start`` (a Unix time or an aware datetime) until
    advanced. ``Clock()`` follows the real time until its first ``advance`` and from then on
    stands still, ``s`` seconds after the moment of that call: a job enqueued with
    ``delay=s`` before it is due after it, whichever of the two ran first.

    Attached to an app (``clock.attach(app)``, or by passing it to ``run_until_idle``), it is
    the time that app's enqueues read (created_at, delay, run_at, debounce, expiry), and
    ``run_until_idle`` reads it for claims, back-off, expiry and cron fires.
    """

    def __init__(self, start: float | datetime | None = None) -> None:
        if isinstance(start, datetime):
            if start.tzinfo is None:
                raise ValueError("Clock(start) needs a timezone-aware datetime, e.g. "
                                 "datetime(2030, 1, 1, tzinfo=timezone.utc)")
            start = start.timestamp()
        #: The frozen time; None while it follows the real time.
        self.frozen: float | None = None if start is None else float(start)

    @property
    def now(self) -> float:
        return time.time() if self.frozen is None else self.frozen

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("a Clock only moves forward; make a new one to go back")
        self.frozen = self.now + seconds
        return self.frozen

    def attach(self, app: App) -> Clock:
        """Make this the time ``app``'s enqueues read; returns the clock."""
        app.clock = self
        return self


@dataclass(frozen=True, slots=True)
class RunReport:
    """What one ``run_until_idle`` call did."""

    succeeded: int = 0
    failed: int = 0  # attempts that failed, retried or not
    retried: int = 0  # of those, the ones scheduled to run again


def run_until_idle(app: App, *, clock: Clock | None = None,
                   queues: Sequence[str] | None = None, max_jobs: int = 10_000,
                   cron: bool = True) -> RunReport:
    """Run due jobs of ``app`` in this process until none is left to run now.

    Scheduled jobs (delays, retries' back-off) run once ``clock`` reaches their time; without
    a clock, the time the app's enqueues read (the real time unless a clock is attached).
    ``clock`` is attached to ``app`` for the rest of the test. With ``cron``, the app's cron
    entries fire as ``litejobs run``'s ticker fires them (an entry owes nothing from before
    the first call). Stops after ``max_jobs`` attempts (a job that keeps re-queueing itself
    would otherwise never let it return).
    """
    if clock is not None:
        clock.attach(app)
    now_of = app.clock
    ticker = _ticker(app) if cron and (app.cron_specs or _has_stored_schedules(app)) else None
    succeeded = failed = retried = 0
    for _ in range(max_jobs):
        now = now_of()
        if ticker is not None:
            ticker.run_once(now)
        rows = app.store.write(functools.partial(_claim, now, queues))
        if not rows:
            break
        row = rows[0]
        # The frames a worker receives and sends, decoded by the code a worker runs.
        msg = protocol.decode_job(protocol.encode_job(row)[4:])
        assert isinstance(msg, protocol.JobMessage)
        frames: list[bytes] = []
        outcome = protocol.decode_report(run_job(app, msg, frames.append)[4:])
        assert outcome is not None
        finished = now_of()
        job_id, attempt = int(row["id"]), int(row["attempt"])
        if frames:  # progress and metadata, as the supervisor writes them: the newest wins
            report = protocol.decode_report(frames[-1][4:])
            assert report is not None
            fraction, message, metadata = report["progress"]
            app.store.write(functools.partial(_progress, (job_id, attempt, fraction, message,
                                                          metadata)))
        if outcome["ok"] and "then" in outcome:  # its children and continuation come with it
            app.store.write(functools.partial(_continue, job_id, attempt, outcome["then"],
                                              str(row["task"]), now, finished))
            succeeded += 1
            continue
        if outcome["ok"]:
            app.store.write(functools.partial(_succeed, job_id, attempt, outcome["result"], now,
                                              finished))
            succeeded += 1
            continue
        retry_at = retry.retry_at(retry=bool(outcome.get("retry")),
                                  delay=reported_delay(outcome.get("delay")),
                                  attempt=attempt, interrupts=int(row["interrupts"]),
                                  max_attempts=int(row["max_attempts"]), now=finished)
        if retry_at is not None:
            retried += 1
        failed += 1
        app.store.write(functools.partial(_fail, job_id, attempt, outcome["error"],
                                          outcome.get("traceback"), now, finished, retry_at))
    return RunReport(succeeded, failed, retried)


def _ticker(app: App) -> Any:
    from litejobs.ticker import Ticker, build_entries

    return Ticker(app, app.store, build_entries(app))


def _has_stored_schedules(app: App) -> bool:
    return bool(app.store.schedules())


@contextmanager
def inline(app: App, *, clock: Clock | None = None) -> Iterator[App]:
    """Within it, each job of ``app`` runs at its enqueue, in the caller's process and thread,
    through ``run_until_idle`` (so with the worker's code and the retry rule): the returned
    Job holds its result or error (``job.result(timeout=0)``). For tests that do not care
    about queues. A job due later (delay, run_at, a retry's back-off) stays scheduled: move
    ``clock`` and call ``run_until_idle`` to run it. Jobs the task enqueues run at once too.
    """
    enqueue_one, enqueue_many = app.enqueue_one, app.enqueue_many
    outer = {k: v for k, v in vars(app).items() if k in ("enqueue_one", "enqueue_many")}

    def one(call: Prepared) -> Job:
        job = enqueue_one(call)
        run_until_idle(app, clock=clock)
        return job.refresh()

    def many(calls: Iterable[Prepared]) -> list[Job]:
        jobs = enqueue_many(calls)
        run_until_idle(app, clock=clock)
        return [job.refresh() for job in jobs]

    # instance attributes shadow the methods: task.enqueue, app.enqueue and enqueue_many
    # all go through these two
    app.enqueue_one = one  # type: ignore[method-assign]
    app.enqueue_many = many  # type: ignore[method-assign]
    try:
        yield app
    finally:
        del app.enqueue_one, app.enqueue_many
        vars(app).update(outer)  # an enclosing inline(app) goes on


def _claim(now: float, queues: Sequence[str] | None, tx: Tx) -> list[Row]:
    tx.promote_due(now)
    tx.expire_due(now)
    names = list(queues) if queues else [n for n, paused in tx.queues() if not paused]
    return tx.claim([WORKER], [QueueLimits(n) for n in names], now, 3600.0)


def _progress(update: tuple[int, int, float | None, str | None, str | None], tx: Tx) -> int:
    return tx.set_progress_many([update])


def _continue(job_id: int, attempt: int, then: Any, task: str, started: float,
              finished: float, tx: Tx) -> bool:
    kids, (cont, delay) = then
    return tx.continue_with(job_id, attempt, kids, cont, delay, WORKER, started, finished, task)


def _succeed(job_id: int, attempt: int, result: str, started: float, finished: float,
             tx: Tx) -> bool:
    return tx.succeed(job_id, attempt, result, WORKER, started, finished)


def _fail(job_id: int, attempt: int, error: str, traceback: str | None, started: float,
          finished: float, retry_at: float | None, tx: Tx) -> bool:
    return tx.fail(job_id, attempt, error, traceback, WORKER, started, finished, retry_at)
