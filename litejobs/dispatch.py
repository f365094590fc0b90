"""Which worker gets which job: sending ahead, taking back (revoke) and rebalancing.

A worker of quick jobs is sent several at once, so it never waits for the supervisor between
them; how many depends on its pace. A worker whose job has run ``REVOKE_AFTER`` gets nothing
more ahead, and while another worker idles the jobs it was sent ahead are revoked: the worker
gives back those it has not started and their claims are undone. A job sent ahead that is
cancelled is revoked the same way, alone, so the job its worker runs is never disturbed.

A worker runs one sync job at a time, or up to ``async_concurrency`` coroutines of ``async
def`` tasks at once. ``admit`` keeps the supervisor's picture of what each worker runs: it
applies the rule the worker applies (``litejobs.aioworker``), in the same order, so both agree
on which jobs have begun without a message for it: jobs begin in the order sent; a coroutine
begins while fewer than ``async_concurrency`` run and no sync job runs; a sync job begins once
nothing runs. A worker running coroutines is offered its free places as idle slots.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from litejobs import protocol
from litejobs.config import Config
from litejobs.errors import LitejobsError
from litejobs.outcomes import Outcomes, jobs_log
from litejobs.pool import Assignment, Pool, WorkerProcess
from litejobs.store import Row, Store

__all__ = ["CANCEL_GRACE", "PREFETCH", "REVOKE_AFTER", "Dispatcher", "depth"]

log = logging.getLogger("litejobs")

#: Jobs a worker may hold: the one it runs and some sent ahead, so it never waits for the
#: supervisor between quick jobs. How many depends on how long its recent jobs took (pace):
#: about the work of a few milliseconds, because a job sent ahead waits behind whatever its
#: worker runs, even while another worker idles.
PREFETCH = ((0.001, 32), (0.01, 8))  # (pace under, jobs held)
#: A worker whose job has run this long (seconds) gets nothing more ahead, and the jobs it was
#: sent ahead are taken back (revoked) for a worker that idles: a long job among quick ones
#: would otherwise hold them for its whole run.
REVOKE_AFTER = 0.02
#: A coroutine asked to cancel (its job was cancelled or taken over) that has not ended this
#: many seconds later gets its worker stopped, as a sync job's would be at once.
CANCEL_GRACE = 5.0


def depth(pace: float) -> int:
    """How many jobs a worker of this pace may hold."""
    for under, held in PREFETCH:
        if pace < under:
            return held
    return 1


class Dispatcher:
    """Hands claimed jobs to the pool's workers and keeps each worker's running job and
    backlog as the supervisor knows them."""

    def __init__(self, pool: Pool, config: Config, outcomes: Outcomes,
                 store: Store | None = None) -> None:
        self.pool = pool
        self.config = config
        self.outcomes = outcomes
        self.store = store  # to tell why a running job was lost (see ``_say_lost``)
        self.concurrency = config.async_concurrency
        #: Task name -> whether it is an ``async def`` (see ``aio.is_async``).
        self._coro: dict[str, bool] = {}

    def is_coro(self, task: str) -> bool:
        """Whether jobs of ``task`` run as coroutines (the worker decides the same way)."""
        known = self._coro.get(task)
        if known is None:
            from litejobs.aio import is_async

            known = self._coro[task] = is_async(self.outcomes.tasks.get(task))
        return known

    # --- who gets jobs -----------------------------------------------------------------------

    def slots(self, now: float) -> list[str]:
        """Worker names, one per job to claim: idle workers first (the best jobs go to them),
        then places in quick workers' backlogs, round-robin."""
        return self.idle_slots(now) + self.ahead_slots(now)

    def idle_slots(self, now: float) -> list[str]:
        """One name per idle worker, then one per free place of the workers running
        coroutines: a job claimed for it starts at once (a sync one, once they are done)."""
        idle: list[str] = []
        places: list[str] = []
        limit = self.config.max_tasks_per_child
        for w in self._open(now):
            if not w.running:
                idle.append(w.name)
            elif not w.backlog and w.coroutines:
                room = self.concurrency - len(w.running)
                if limit:
                    room = min(room, limit - w.done - len(w.running))
                places.extend([w.name] * room)
        return idle + places if places else idle

    def ahead_slots(self, now: float) -> list[str]:
        """Places in quick workers' backlogs, round-robin: jobs claimed for them start once
        the jobs before them are done."""
        limit = self.config.max_tasks_per_child
        extra: list[list[str]] = []
        for w in self._open(now):
            if w.running and w.coroutines:
                # its free places are idle slots; a few more wait behind them, so a place
                # that frees is filled without waiting for the supervisor
                room = self.concurrency // 2 - len(w.backlog)
                if len(w.backlog) <= self.concurrency // 4 and room > 0:
                    if limit:  # counting its free places, claimed as idle slots
                        held = max(len(w.running) + len(w.backlog), self.concurrency)
                        room = min(room, limit - w.done - held)
                    if room > 0:
                        extra.append([w.name] * room)
                continue
            held = len(w.backlog) + len(w.running)
            d = depth(w.pace)
            if held > d // 2:
                continue  # topped up at half: one claim and one pipe write for many jobs
            room = d - held
            if limit:
                room = min(room, limit - w.done - held)
            if not w.running:
                room -= 1  # its first job is an idle slot
            if room > 0:
                extra.append([w.name] * room)
        return [n for names in itertools.zip_longest(*extra) for n in names if n is not None]

    def _open(self, now: float) -> Iterable[WorkerProcess]:
        limit = self.config.max_tasks_per_child
        for w in self.pool.workers.values():
            if not w.ready or w.retiring or w.revoking or w.broken:
                continue
            a = w.oldest()
            if a is not None and not a.coro and now - a.started >= REVOKE_AFTER:
                continue  # on a long job: whatever it were sent would wait behind it
            if limit and w.done + len(w.backlog) + len(w.running) >= limit:
                continue
            yield w

    def hand_out(self, rows: Iterable[Row], now: float) -> None:
        """Send claimed jobs to the workers their claims name, one write per worker."""
        by_name = {w.name: w for w in self.pool.workers.values()}
        batches: dict[str, list[bytes]] = {}
        sent: dict[str, list[Assignment]] = {}
        unstarted = self.outcomes.unstarted
        for row in rows:
            w = by_name[row["leased_by"]]
            task = str(row["task"])
            a = Assignment(
                id=row["id"], attempt=row["attempt"], task=task,
                queue=str(row["queue"]), max_attempts=row["max_attempts"],
                interrupts=row["interrupts"], crashes=row["crashes"], started=now,
                deadline=None, timeout=row["timeout"], step=row["workflow"] is not None,
                coro=self.is_coro(task))
            if "unknown_start" in row:  # rated, sent ahead: ``admit`` reports its start
                unstarted[a.id, a.attempt] = row["unknown_start"]
            w.backlog.append(a)
            batches.setdefault(w.name, []).append(protocol.encode_job(row))
            sent.setdefault(w.name, []).append(a)
        for name, frames in batches.items():
            w = by_name[name]
            self.admit(w, now)
            data = b"".join(frames)
            if not self.pool.send(w, data):
                # writes take the outbox from its front: ours, at its end, is whole if the
                # outbox still holds as much (or it was never queued: the pipe was closed)
                if w.to_worker < 0 or len(w.outbox) >= len(data):
                    self._undeliverable(w, sent[name], now)
                self.pool.kill(w)  # reaped next cycle; its other jobs are returned

    def _undeliverable(self, w: WorkerProcess, jobs: list[Assignment], now: float) -> None:
        """``jobs`` never reached ``w`` (its pipe broke before any byte of them was written):
        they are given back as never claimed, not charged as a crash of a job it never had."""
        for a in jobs:
            self.outcomes.unclaim(w, a, now)
            if w.running.get((a.id, a.attempt)) is a:
                del w.running[a.id, a.attempt]
        w.backlog = deque(b for b in w.backlog if not any(b is a for a in jobs))

    def admit(self, w: WorkerProcess, now: float) -> None:
        """Begin the jobs at the front of ``w``'s backlog that the worker begins now (the
        worker's own rule, see the module's docstring): their clocks and timeouts start."""
        backlog = w.backlog
        unstarted = self.outcomes.unstarted
        while backlog:
            a = backlog[0]
            if w.running and not (a.coro and len(w.running) < self.concurrency
                                  and w.coroutines):
                return
            backlog.popleft()
            a.started = now
            a.deadline = None if a.timeout is None else time.monotonic() + a.timeout
            w.running[a.id, a.attempt] = a
            if unstarted:  # a rated job sent ahead: its rate windows learn when it began
                self.outcomes.began(w, a, now)
            if a.withdrawn and a.coro:  # cancelled while sent ahead; the worker may run it
                self.cancel(w, a)

    def finished(self, w: WorkerProcess, msg: Mapping[str, Any], now: float) -> bool:
        """The worker's outcome message: it waits to be recorded (unless the job is no
        longer ours) and the jobs behind it may begin. False for an outcome no longer
        waited for (its job was taken back from the worker)."""
        a = w.running.pop((msg["id"], msg["attempt"]), None)
        if a is None:
            return False
        w.done += 1
        # the worker's own measure of the attempt: the time its outcome waited to be read (the
        # supervisor busy in a transaction: 7-15 ms for a limited claim on PostgreSQL) would
        # make a quick worker look slow and get nothing sent ahead, which keeps it slow
        took = msg.get("took")
        w.pace = 0.7 * w.pace + 0.3 * (took if isinstance(took, float) and took > 0.0
                                       else now - a.started)
        if w.backlog:
            self.admit(w, now)
        if not a.withdrawn:  # (a cancelled coroutine's end only frees its place)
            self.outcomes.reported(w, a, msg, now)
        return True

    def cancel(self, w: WorkerProcess, a: Assignment) -> None:
        """Ask ``w`` to cancel the coroutine of ``a`` (no longer ours); its worker is stopped
        if it has not ended ``CANCEL_GRACE`` s later. Its outcome, when it comes, is dropped."""
        if a.cancelling:
            return
        a.withdrawn = a.cancelling = True
        grace = time.monotonic() + CANCEL_GRACE
        a.deadline = grace if a.deadline is None else min(a.deadline, grace)
        if not self.pool.send(w, protocol.cancel([(a.id, a.attempt)])):
            self.pool.kill(w)

    # --- taking jobs back --------------------------------------------------------------------

    def revocable(self) -> list[WorkerProcess]:
        """Workers running a job with jobs sent ahead behind it, while another worker idles:
        those jobs may be taken back once the job runs long."""
        workers = self.pool.workers.values()
        if not any(w.idle and not w.backlog for w in workers):
            return []
        return [w for w in workers if w.running and w.backlog and not w.revoking]

    @staticmethod
    def _moved(w: WorkerProcess) -> float:
        """When a job last began in ``w``: its backlog has waited since."""
        return max(a.started for a in w.running.values())

    def rebalance(self, now: float) -> None:
        """While a worker idles, take back the jobs sent ahead to one stuck on long jobs."""
        for w in self.revocable():
            if now - self._moved(w) < REVOKE_AFTER:
                continue
            w.revoking += 1
            if not self.pool.send(w, protocol.revoke((b.id, b.attempt) for b in w.backlog)):
                self.pool.kill(w)  # reaped next cycle; its jobs are returned

    def next_revoke(self) -> float | None:
        """When a job sent ahead would next be taken back (wall clock), if a worker idles."""
        starts = [self._moved(w) for w in self.revocable()]
        return min(starts) + REVOKE_AFTER if starts else None

    def lost(self, job_id: int, attempt: int) -> None:
        """Attempt ``attempt`` of a job of ours was cancelled or rescued. Running: a coroutine
        is cancelled in its worker, which goes on; a sync job's worker is stopped (its other
        jobs go back to queued). Sent ahead: it is asked back alone, and the worker's running
        jobs go on. Matched by attempt too: a rescued job may already run again in another
        worker of ours, under the next attempt number."""
        for w in list(self.pool.workers.values()):
            if w.from_worker >= 0:
                self.outcomes.read(w)  # it may have just finished (or begun) that job
            held = w.running.get((job_id, attempt))
            if held is not None:
                if held.coro:
                    if not held.cancelling:
                        self._say_lost(held, w)
                        self.cancel(w, held)
                elif self.outcomes.stop(w, "another job of its worker was cancelled",
                                        job=held, drop=True):
                    self._say_lost(held, w)
                return
            for a in w.backlog:
                if a.id == job_id and a.attempt == attempt:
                    log.debug("job %s (attempt %s), sent ahead to worker %s, was cancelled "
                              "or taken over; asking for it back", job_id, attempt, w.pid)
                    self.withdraw(w, a)
                    return

    def _say_lost(self, a: Assignment, w: WorkerProcess) -> None:
        """The line for a running job that is no longer ours: cancelled, deleted, or rescued
        by another supervisor (read from the file: rare, and the user wants to know which)."""
        state: str | None = "?"
        if self.store is not None:
            try:
                row = self.store.get_job(a.id)
            except LitejobsError:
                row = {}
            state = None if row is None else row.get("state", "?")
        head = f"job {a.id} ({a.task}, attempt {a.attempt})"
        fields = {"job": a.id, "task": a.task, "attempt": a.attempt}
        if state == "cancelled":
            jobs_log.info("%s cancelled while running: stopped", head,
                          extra={**fields, "outcome": "cancelled"})
        elif state is None:
            jobs_log.info("%s deleted while running: stopped", head,
                          extra={**fields, "outcome": "deleted"})
        else:
            jobs_log.info("%s stopped here: another supervisor took it over (its lease had "
                          "run out)", head, extra={**fields, "outcome": "taken over"})
        log.debug("stopped worker %s, which ran job %s (attempt %s)", w.pid, a.id, a.attempt)

    def withdraw(self, w: WorkerProcess, a: Assignment) -> None:
        """A job sent ahead to ``w`` is no longer ours (cancelled, or rescued): ask for it
        back, alone. It stays in the backlog, marked, until the worker answers, so the order
        of the worker's jobs stays known; if the worker has started it by then, it is
        stopped (see ``on_revoked``)."""
        if a.withdrawn:
            return  # asked already
        a.withdrawn = True
        w.revoking += 1
        if not self.pool.send(w, protocol.revoke([(a.id, a.attempt)])):
            self.pool.kill(w)

    def on_revoked(self, w: WorkerProcess, pairs: list[list[int]],
                   now: float) -> Assignment | None:
        """The worker gave back jobs it had not started: their claims are undone (attempt
        numbers returned, as for a dead worker's backlog), for the idle workers to take.
        Returns its running sync job when that is one that was withdrawn (stop the worker);
        a withdrawn coroutine that runs is cancelled."""
        given = {(int(i), int(n)) for i, n in pairs}
        w.revoking = max(0, w.revoking - 1)
        taken = [a for a in w.assignments() if (a.id, a.attempt) in given]
        if any(not a.withdrawn for a in taken):
            log.info("took back %d job(s) waiting behind a long job, for an idle worker to run",
                     len(taken))
            log.debug("(they were sent ahead to worker %s)", w.pid)
        for a in taken:
            if not a.withdrawn:  # a withdrawn one is not ours to undo any more
                self.outcomes.unclaim(w, a, now)
            else:  # (its start, if rated, is settled in the file: RATE_LEFT)
                self.outcomes.unstarted.pop((a.id, a.attempt), None)
        w.backlog = deque(a for a in w.backlog if (a.id, a.attempt) not in given)
        # Counted as begun when the job before it ended, but given back: the worker runs the
        # next ones it kept, if any.
        for key in given.intersection(w.running):
            del w.running[key]
        self.admit(w, now)
        # A withdrawn job not given back has started: it runs on in the worker.
        for a in w.running.values():
            if a.withdrawn:
                if not a.coro:
                    return a
                self.cancel(w, a)
        return None
