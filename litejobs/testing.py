"""Helpers for your own tests: run jobs inline until idle, with a clock you control.

    from litejobs.testing import Clock, run_until_idle

    def test_signup_sends_mail(tmp_path):
        app = make_app(tmp_path / "jobs.db")
        clock = Clock()
        signup("ada@example.com")             # enqueues mail.send with a 60 s delay
        assert run_until_idle(app, clock=clock).succeeded == 0   # not due yet
        clock.advance(60)
        assert run_until_idle(app, clock=clock).succeeded == 1

Jobs run in this process, one at a time, through the same store, claim, retry rule and
outcome records as under ``litejobs run`` — only without worker processes, timeouts or cron.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litejobs import protocol, retry
from litejobs.app import App
from litejobs.store import QueueLimits, Row, Tx
from litejobs.worker import run_job

__all__ = ["Clock", "RunReport", "run_until_idle"]

WORKER = "litejobs.testing:inline"


class Clock:
    """A clock that only moves when told to: ``clock()`` is the time, ``advance(s)`` moves it."""

    def __init__(self, start: float | datetime | None = None) -> None:
        if isinstance(start, datetime):
            if start.tzinfo is None:
                raise ValueError("Clock(start) needs a timezone-aware datetime")
            start = start.timestamp()
        self.now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("a Clock only moves forward; make a new one to go back")
        self.now += seconds
        return self.now


@dataclass(frozen=True, slots=True)
class RunReport:
    """What one ``run_until_idle`` call did."""

    succeeded: int = 0
    failed: int = 0  # attempts that failed, retried or not
    retried: int = 0  # of those, the ones scheduled to run again


def run_until_idle(app: App, *, clock: Clock | None = None,
                   queues: Sequence[str] | None = None, max_jobs: int = 10_000) -> RunReport:
    """Run due jobs of ``app`` in this process until none is left to run now.

    Scheduled jobs (delays, retries' back-off) run once ``clock`` reaches their time; without
    a clock, the real time. Stops after ``max_jobs`` attempts (a job that keeps re-queueing
    itself would otherwise never let it return).
    """
    now_of = clock if clock is not None else time.time
    succeeded = failed = retried = 0
    for _ in range(max_jobs):
        now = now_of()
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
        retry_at = retry.retry_at(retry=bool(outcome["retry"]), delay=outcome["delay"],
                                  attempt=attempt, interrupts=int(row["interrupts"]),
                                  max_attempts=int(row["max_attempts"]), now=finished)
        if retry_at is not None:
            retried += 1
        failed += 1
        app.store.write(functools.partial(_fail, job_id, attempt, outcome["error"],
                                          outcome.get("traceback"), now, finished, retry_at))
    return RunReport(succeeded, failed, retried)


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
