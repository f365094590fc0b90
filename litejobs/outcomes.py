"""Outcomes of attempts, recorded in batches, and the one way to stop a worker.

Outcomes wait in ``pending`` until the supervisor's next write transaction records them all
(one commit for many jobs). ``stop(worker, ...)`` is the only way a worker is ended while it
holds jobs: it first reads what the worker already reported, so an outcome in the pipe is
recorded rather than lost (a finished job would run again) and a job that already ended is
not charged for the stop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from litejobs import logs, retry
from litejobs.pool import Assignment, Pool, WorkerProcess
from litejobs.store import Tx
from litejobs.task import Task

__all__ = ["Outcome", "Outcomes", "announce"]

log = logging.getLogger("litejobs")
#: One line per recorded outcome (``announce``): a logger of their own, to filter on.
jobs_log = logging.getLogger("litejobs.jobs")
#: An error in a line about a job is cut to this many characters (the attempt keeps it all).
LINE_ERROR = 300


@dataclass(slots=True)
class Outcome:
    kind: str  # "ok" | "then" | "fail" | "interrupt" | "unclaim" | "start"
    a: Assignment
    worker: str
    finished: float
    result: str = "null"
    error: str = ""
    traceback: str | None = None
    retry_at: float | None = None
    crashed: bool = False
    #: kind "then": ([(child, its delay), ...], (continuation, its delay)) as decoded
    then: Any = None
    #: kind "start" (a job sent ahead began at ``finished``): the rate windows that wait to
    #: learn it (``store.claims.QUEUE_RATED | FLOW_RATED``)
    rated: int = 0
    #: How many write transactions it was sent in (more than one: an earlier one failed,
    #: maybe after its COMMIT reached the server).
    sends: int = 0
    #: What the store decided, set by ``record``: "" recorded; REFUSED (its attempt no longer
    #: held the job: its lease lost and the job rescued, or cancelled); UNSURE (not recorded
    #: by this write: refused, or recorded already by an earlier send of it).
    verdict: str = ""


REFUSED = "refused"
UNSURE = "unsure"


class Outcomes:
    """Outcomes waiting to be recorded, and stopping workers without losing any."""

    def __init__(self, pool: Pool, tasks: Mapping[str, Task[Any, Any]], crash_limit: int,
                 read: Callable[[WorkerProcess], None]) -> None:
        self.pool = pool
        self.tasks = tasks
        self.crash_limit = crash_limit
        self.read = read  # takes in every message a worker has sent so far
        self.pending: list[Outcome] = []
        #: Running jobs' newest progress by id: (attempt, fraction, message, metadata JSON).
        #: Each report holds whole values, so the newest replaces the one waiting.
        self.progress: dict[int, tuple[int, float | None, str | None, str | None]] = {}
        #: Rated jobs sent ahead, by (id, attempt), whose start the rate windows count as not
        #: yet known (the claim row's ``unknown_start``) until ``began`` reports it.
        self.unstarted: dict[tuple[int, int], int] = {}

    def __bool__(self) -> bool:
        return bool(self.pending)

    def take(self) -> list[Outcome]:
        out, self.pending = self.pending, []
        return out

    def progressed(self, job_id: int, attempt: int,
                   values: tuple[float | None, str | None, str | None]) -> None:
        """The running attempt's newest progress report (written by the next transaction,
        before any outcome of that turn: it is fenced to running attempts; see
        ``Claimer.step`` for how often a transaction runs for progress alone)."""
        self.progress[job_id] = (attempt, *values)

    def take_progress(self) -> list[tuple[int, int, float | None, str | None, str | None]]:
        out = [(job_id, *v) for job_id, v in self.progress.items()]
        self.progress = {}
        return out

    def keep_progress(self, updates: list[tuple[int, int, float | None, str | None,
                                                 str | None]]) -> None:
        """Updates a failed transaction did not write: kept unless a newer one came."""
        for job_id, attempt, fraction, message, metadata in updates:
            self.progress.setdefault(job_id, (attempt, fraction, message, metadata))

    # --- what happened -----------------------------------------------------------------------

    def reported(self, w: WorkerProcess, a: Assignment, msg: Mapping[str, Any],
                 now: float) -> None:
        """The worker's own outcome message for ``a``."""
        if msg["ok"]:
            then = msg.get("then")
            self.pending.append(Outcome("ok" if then is None else "then", a, w.name, now,
                                        result=msg["result"], then=then))
            return
        when = retry.retry_at(retry=bool(msg.get("retry")), delay=_delay(msg.get("delay")),
                              attempt=a.attempt, interrupts=a.interrupts,
                              max_attempts=a.max_attempts, now=now)
        tb = msg.get("traceback")
        self.pending.append(Outcome("fail", a, w.name, now, error=str(msg["error"]),
                                    traceback=tb if isinstance(tb, str) else None,
                                    retry_at=when))

    def unclaim(self, w: WorkerProcess, a: Assignment, now: float) -> None:
        """``a`` never started: give the claim back as if it had not happened."""
        if self.unstarted:
            self.unstarted.pop((a.id, a.attempt), None)
        self.pending.append(Outcome("unclaim", a, w.name, now))

    def began(self, w: WorkerProcess, a: Assignment, now: float) -> None:
        """``a``, a rated job sent ahead, began (as far as the supervisor knows at ``now``,
        which is no sooner than it did): its start gets that time in the next transaction."""
        rated = self.unstarted.pop((a.id, a.attempt), 0)
        if rated:
            self.pending.append(Outcome("start", a, w.name, now, rated=rated))

    def failed_by_supervisor(self, w: WorkerProcess, a: Assignment, error: str,
                             error_type: type[BaseException], crashed: bool) -> None:
        """``a``, a running job of ``w``, failed for a reason only the supervisor sees."""
        now = time.time()
        plan = retry.after_error(
            task=self.tasks.get(a.task), error=error, error_type=error_type,
            attempt=a.attempt, interrupts=a.interrupts, max_attempts=a.max_attempts,
            crashes=a.crashes, crash_limit=self.crash_limit, now=now, crashed=crashed)
        self.pending.append(Outcome("fail", a, w.name, now, error=plan.error,
                                    retry_at=plan.retry_at, crashed=crashed))
        w.running.pop((a.id, a.attempt), None)

    def interrupt(self, w: WorkerProcess, reason: str) -> None:
        """Return every job the worker holds to queued, not counted as a failure."""
        now = time.time()
        for a in w.running.values():
            if not a.withdrawn:
                self.pending.append(Outcome("interrupt", a, w.name, now, error=reason))
        for a in w.backlog:
            if not a.withdrawn:
                self.unclaim(w, a, now)
            elif self.unstarted:  # not ours: its start's row is settled in the file
                self.unstarted.pop((a.id, a.attempt), None)
        w.running.clear()
        w.backlog.clear()

    # --- stopping a worker -------------------------------------------------------------------

    def stop(self, w: WorkerProcess, reason: str, *, job: Assignment | None = None,
             fail: tuple[str, type[BaseException], bool] | None = None,
             drop: bool = False) -> bool:
        """End ``w`` and settle the jobs it holds. First reads what it reported, so nothing
        it already finished is lost or run again.

        ``job``: stop only if this job still runs in it (it may have just ended).
        ``fail``: (error, type, crashed) for ``job`` (without one: for every running job),
        under the retry rule. ``drop``: ``job`` is no longer ours (cancelled or rescued):
        record nothing for it. Its other running jobs are interrupted (back to queued, not
        counted). Jobs sent ahead go back as never claimed. Returns whether the worker was
        stopped."""
        if w.from_worker >= 0 and w.broken is None:  # a broken one's words are not read
            self.read(w)
        if job is not None and w.running.get((job.id, job.attempt)) is not job:
            return False
        if fail is not None:
            for a in [job] if job is not None else list(w.running.values()):
                if not a.withdrawn:
                    self.failed_by_supervisor(w, a, *fail)
        if drop and job is not None:
            w.running.pop((job.id, job.attempt), None)
        self.interrupt(w, reason)
        self.pool.kill(w)
        return True

    # --- recording ---------------------------------------------------------------------------

    @staticmethod
    def record(tx: Tx, outcomes: list[Outcome]) -> float | None:
        """Write ``outcomes`` in the caller's transaction; returns the earliest retry time
        still in the future (the next promotion), if any."""
        oks = [o for o in outcomes if o.kind == "ok"]
        taken = tx.succeed_many([(o.a.id, o.a.attempt, o.result, o.worker, o.a.started,
                                  o.finished) for o in oks])
        due: float | None = None
        starts: list[tuple[int, float, int]] = []
        for o in outcomes:
            a = o.a
            o.sends += 1
            o.verdict = ""  # (an earlier send's, rolled back)
            if o.kind == "ok":
                continue
            if o.kind == "start":
                starts.append((a.id, o.finished, o.rated))
                continue
            if o.kind == "then":
                kids, (cont, delay) = o.then
                if not tx.continue_with(a.id, a.attempt, kids, cont, delay, o.worker, a.started,
                                        o.finished, a.task) and not tx.succeed(
                        a.id, a.attempt, "null", o.worker, a.started, o.finished):
                    o.verdict = _not_recorded(o)
            elif o.kind == "fail":
                if not tx.fail(a.id, a.attempt, o.error, o.traceback, o.worker, a.started,
                               o.finished, o.retry_at, crashed=o.crashed):
                    o.verdict = _not_recorded(o)
                elif o.retry_at is not None and o.retry_at > o.finished:
                    due = o.retry_at if due is None else min(due, o.retry_at)
            elif o.kind == "interrupt":
                if not tx.interrupt(a.id, a.attempt, o.error, o.worker, a.started, o.finished):
                    o.verdict = _not_recorded(o)
            else:
                tx.unclaim(a.id, a.attempt)
        if starts:  # after the jobs given back: a start reported for one is no start
            tx.record_starts(starts)
        if taken < len(oks):
            _judge_successes(tx, oks, taken)
        return due


def _not_recorded(o: Outcome) -> str:
    """An outcome the store did not take: refused, unless an earlier send of it may have
    been committed (then this one is its duplicate)."""
    return REFUSED if o.sends <= 1 else UNSURE


def _judge_successes(tx: Tx, oks: list[Outcome], taken: int) -> None:
    """Which successes of a batch the store did not take (it says only how many): a job not
    succeeded now was surely refused; if those are all the missing ones, the rest were taken.
    (Only when some were missing: the common batch costs nothing more.)"""
    missing = len(oks) - taken
    gone = [o for o in oks if tx.job_state(o.a.id) != "succeeded"]
    for o in gone:
        o.verdict = REFUSED
    if len(gone) < missing:  # refused as another attempt succeeded, or duplicates
        for o in oks:
            if not o.verdict:
                o.verdict = UNSURE


def announce(recorded: list[Outcome]) -> None:
    """Log one line per outcome just committed: what a user wants to know about each job.
    Jobs given back unstarted (sent ahead, then revoked) only at DEBUG."""
    if not jobs_log.isEnabledFor(logging.INFO):  # (DEBUG, under INFO, is off too)
        if jobs_log.isEnabledFor(logging.WARNING):
            refused = [o for o in recorded if o.verdict]
            if refused:
                logs.job_lines(jobs_log, [_refused(o) for o in refused])
        return
    info = logging.INFO
    lines: list[tuple[int, str, dict[str, Any]]] = []
    for o in recorded:
        a = o.a
        kind = o.kind
        if kind == "start":
            continue
        if o.verdict:
            lines.append(_refused(o))
            continue
        fields: dict[str, Any] = {"job": a.id, "task": a.task, "attempt": a.attempt}
        head = f"job {a.id} ({a.task}, attempt {a.attempt})"
        if kind in ("ok", "then"):
            took = max(0.0, o.finished - a.started)
            fields["outcome"] = "succeeded"
            fields["duration"] = round(took, 6)
            more = "; its continuation was enqueued" if kind == "then" else ""
            lines.append((info, f"{head} succeeded in {_seconds(took)}{more}", fields))
        elif kind == "fail":
            lines.append((info, _failed(o, head, fields), fields))
        elif kind == "interrupt":
            fields["outcome"] = "interrupted"
            lines.append((info, f"{head} interrupted ({o.error}): back to queued, to run again "
                                "(not counted against its retries)", fields))
        else:
            fields["outcome"] = "given back"
            lines.append((logging.DEBUG, f"{head} was given back before it started (it was "
                                         "sent ahead to a worker); its claim is undone", fields))
    if lines:
        logs.job_lines(jobs_log, lines)


def _refused(o: Outcome) -> tuple[int, str, dict[str, Any]]:
    """The warning of an outcome the store did not take (``o.verdict``)."""
    a = o.a
    what = {"ok": "succeeded", "then": "succeeded", "fail": "failed",
            "interrupt": "was interrupted"}.get(o.kind, "ended")
    fields: dict[str, Any] = {"job": a.id, "task": a.task, "attempt": a.attempt,
                              "outcome": "refused" if o.verdict == REFUSED else "unsure"}
    head = f"job {a.id} ({a.task}, attempt {a.attempt}) {what}"
    if o.verdict == REFUSED:
        text = (f"{head}, but the store refused its outcome: that attempt no longer held "
                "the job (its lease was lost, its supervisor or host silent past it, and the "
                "job rescued; or it was cancelled). The job's state is not this attempt's")
    else:
        text = (f"{head}, but the store did not record it in this write: an earlier send of "
                "it was committed, or its lease was lost and another attempt's outcome "
                "stands; see `litejobs show` for the job")
    return logging.WARNING, text, fields


def _failed(o: Outcome, head: str, fields: dict[str, Any]) -> str:
    """The line of a failed attempt (``fields`` gets its outcome, error and retry)."""
    a = o.a
    error = o.error.strip()
    lines = error.splitlines()
    line = lines[0] if lines else error
    if len(line) > LINE_ERROR or len(lines) > 1:
        line = line[:LINE_ERROR] + " [...]"
    if error.startswith("JobTimeout:"):
        what = "timed out" if a.timeout is None else f"timed out after {a.timeout:g} s"
        fields["outcome"] = "timeout"
    elif o.crashed:
        what = f"crashed ({line})"
        fields["outcome"] = "crashed"
    else:
        what = f"failed ({line})"
        fields["outcome"] = "failed"
    fields["error"] = line
    if o.retry_at is not None:
        delay = max(0.0, o.retry_at - o.finished)
        fields["retry_in"] = round(delay, 3)
        if fields["outcome"] == "failed":
            fields["outcome"] = "retried"
        when = "now" if delay < 0.0005 else f"in {_seconds(delay)}"
        return f"{head} {what}; retrying {when}"
    counted = a.attempt - a.interrupts
    if counted >= a.max_attempts:
        why = f"after {counted} attempt{'s' if counted != 1 else ''}"
    elif o.crashed:
        why = "(its worker died too often: crash_limit)"
    else:
        why = "(this error is not retried)"
    if fields["outcome"] == "failed":
        return f"{head} failed for good {why}: {line}"
    return f"{head} {what}; failed for good {why}"


def _seconds(value: float) -> str:
    """A duration as people read it."""
    if value < 0.001:
        return "under 1 ms"  # (a job sent ahead starts when the one before it is seen done)
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.3g} s" if value < 100 else f"{value:.0f} s"


def _delay(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
