"""Which worker gets which job: sending ahead, taking back (revoke) and rebalancing.

A worker of quick jobs is sent several at once, so it never waits for the supervisor between
them; how many depends on its pace. A worker whose job has run ``REVOKE_AFTER`` gets nothing
more ahead, and while another worker idles the jobs it was sent ahead are revoked: the worker
gives back those it has not started and their claims are undone. A job sent ahead that is
cancelled is revoked the same way, alone, so the job its worker runs is never disturbed.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Iterable

from litejobs import protocol
from litejobs.config import Config
from litejobs.errors import LitejobsError
from litejobs.outcomes import Outcomes, jobs_log
from litejobs.pool import Assignment, Pool, WorkerProcess
from litejobs.store import Row, Store

__all__ = ["PREFETCH", "REVOKE_AFTER", "Dispatcher", "depth"]

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

    # --- who gets jobs -----------------------------------------------------------------------

    def slots(self, now: float) -> list[str]:
        """Worker names, one per job to claim: idle workers first (the best jobs go to them),
        then places in quick workers' backlogs, round-robin."""
        return self.idle_slots(now) + self.ahead_slots(now)

    def idle_slots(self, now: float) -> list[str]:
        """One name per idle worker: a job claimed for it starts at once."""
        return [w.name for w in self._open(now) if w.job is None]

    def ahead_slots(self, now: float) -> list[str]:
        """Places in quick workers' backlogs, round-robin: jobs claimed for them start once
        the jobs before them are done."""
        limit = self.config.max_tasks_per_child
        extra: list[list[str]] = []
        for w in self._open(now):
            held = len(w.backlog) + (w.job is not None)
            d = depth(w.pace)
            if held > d // 2:
                continue  # topped up at half: one claim and one pipe write for many jobs
            room = d - held
            if limit:
                room = min(room, limit - w.done - held)
            if w.job is None:
                room -= 1  # its first job is an idle slot
            if room > 0:
                extra.append([w.name] * room)
        return [n for names in itertools.zip_longest(*extra) for n in names if n is not None]

    def _open(self, now: float) -> Iterable[WorkerProcess]:
        limit = self.config.max_tasks_per_child
        for w in self.pool.workers.values():
            if not w.ready or w.retiring or w.revoking or w.broken:
                continue
            if w.job is not None and now - w.job.started >= REVOKE_AFTER:
                continue  # on a long job: whatever it were sent would wait behind it
            if limit and w.done + len(w.backlog) + (w.job is not None) >= limit:
                continue
            yield w

    def hand_out(self, rows: Iterable[Row], now: float) -> None:
        """Send claimed jobs to the workers their claims name, one write per worker."""
        by_name = {w.name: w for w in self.pool.workers.values()}
        batches: dict[str, list[bytes]] = {}
        sent: dict[str, list[Assignment]] = {}
        for row in rows:
            w = by_name[row["leased_by"]]
            a = Assignment(
                id=row["id"], attempt=row["attempt"], task=str(row["task"]),
                queue=str(row["queue"]), max_attempts=row["max_attempts"],
                interrupts=row["interrupts"], crashes=row["crashes"], started=now,
                deadline=None, timeout=row["timeout"], step=row["workflow"] is not None)
            if w.job is None:
                self.begin(w, a, now)
            else:
                w.backlog.append(a)
            batches.setdefault(w.name, []).append(protocol.encode_job(row))
            sent.setdefault(w.name, []).append(a)
        for name, frames in batches.items():
            w = by_name[name]
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
        if w.job is not None and any(w.job is a for a in jobs):
            w.job = None
        w.backlog = deque(b for b in w.backlog if not any(b is a for a in jobs))

    @staticmethod
    def begin(w: WorkerProcess, a: Assignment, now: float) -> None:
        """``a`` is the job ``w`` runs from now: its clock and timeout start here."""
        a.started = now
        a.deadline = None if a.timeout is None else time.monotonic() + a.timeout
        w.job = a

    def finished(self, w: WorkerProcess, now: float) -> Assignment:
        """The worker reported its running job's outcome: its next one (if any) begins."""
        a = w.job
        assert a is not None
        w.job = None
        w.done += 1
        w.pace = 0.7 * w.pace + 0.3 * (now - a.started)
        if w.backlog:
            self.begin(w, w.backlog.popleft(), now)
        return a

    # --- taking jobs back --------------------------------------------------------------------

    def revocable(self) -> list[WorkerProcess]:
        """Workers running a job with jobs sent ahead behind it, while another worker idles:
        those jobs may be taken back once the job runs long."""
        workers = self.pool.workers.values()
        if not any(w.idle and not w.backlog for w in workers):
            return []
        return [w for w in workers if w.job is not None and w.backlog and not w.revoking]

    def rebalance(self, now: float) -> None:
        """While a worker idles, take back the jobs sent ahead to one stuck on a long job."""
        for w in self.revocable():
            assert w.job is not None
            if now - w.job.started < REVOKE_AFTER:
                continue
            w.revoking += 1
            if not self.pool.send(w, protocol.revoke((b.id, b.attempt) for b in w.backlog)):
                self.pool.kill(w)  # reaped next cycle; its jobs are returned

    def next_revoke(self) -> float | None:
        """When a job sent ahead would next be taken back (wall clock), if a worker idles."""
        starts = [w.job.started for w in self.revocable() if w.job is not None]
        return min(starts) + REVOKE_AFTER if starts else None

    def lost(self, job_id: int, attempt: int) -> None:
        """Attempt ``attempt`` of a job of ours was cancelled or rescued. Running: its worker
        is stopped (its other jobs go back to queued). Sent ahead: it is asked back alone, and
        the worker's running job goes on. Matched by attempt too: a rescued job may already
        run again in another worker of ours, under the next attempt number."""
        for w in list(self.pool.workers.values()):
            if w.from_worker >= 0:
                self.outcomes.read(w)  # it may have just finished (or begun) that job
            held = w.job
            if held is not None and held.id == job_id and held.attempt == attempt:
                if self.outcomes.stop(w, "another job of its worker was cancelled", job=held,
                                      drop=True):
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

    def on_revoked(self, w: WorkerProcess, pairs: list[list[int]], now: float) -> bool:
        """The worker gave back jobs it had not started: their claims are undone (attempt
        numbers returned, as for a dead worker's backlog), for the idle workers to take.
        Returns True when its running job is one that was withdrawn (stop the worker)."""
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
        w.backlog = deque(a for a in w.backlog if (a.id, a.attempt) not in given)
        if w.job is not None and (w.job.id, w.job.attempt) in given:
            # Counted as begun when the job before it ended, but given back: the worker runs
            # the next one it kept, if any.
            w.job = None
            if w.backlog:
                self.begin(w, w.backlog.popleft(), now)
        # A withdrawn job not given back has started: it runs on in the worker.
        return w.job is not None and w.job.withdrawn
