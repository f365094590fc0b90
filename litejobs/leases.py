"""Leases of the jobs this supervisor's workers hold: renewals, the held check, the clock.

A running job's lease is renewed every third of ``lease`` for the jobs of workers heard from
recently (a frozen worker's jobs are let go, and rescued once their lease runs out). The held
check compares what our workers hold with what the file says we hold: a job cancelled, or
rescued by another supervisor, is no longer ours and is stopped. The other way round, after a
turn whose end is unknown (its commit's answer lost), ``give_back_strays`` returns the jobs
the store gives us that none of our workers holds. Leases are wall-clock times and the loop's
timers monotonic, so a step of the wall clock renews every lease at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from litejobs.pool import Pool
from litejobs.store import Store, Tx

__all__ = ["CLOCK_STEP", "HELD_CHECK", "Leases"]

log = logging.getLogger("litejobs")

#: How often running jobs are checked for cancellation (seconds).
HELD_CHECK = 1.0
#: A change of the wall clock against the monotonic one bigger than this is a clock step.
CLOCK_STEP = 1.0


class Leases:
    """When to renew, what to renew, and which held jobs are no longer ours."""

    def __init__(self, store: Store, supervisor: str, lease: float,
                 worker_heartbeat: float) -> None:
        self.store = store
        self.prefix = supervisor + ":"
        self.lease = lease
        self.worker_heartbeat = worker_heartbeat
        mono = time.monotonic()
        self.renew_at = mono + lease / 3
        self.held_at = mono + HELD_CHECK
        self.check_now = False  # a cancel rang: check before the next period
        self.clock_offset = time.time() - mono

    def next_deadline(self) -> float:
        return min(self.renew_at, self.held_at)

    def renewals(self, pool: Pool, mono: float) -> list[tuple[int, int]] | None:
        """The (job, attempt) pairs to renew now; None when renewal is not due."""
        if mono < self.renew_at:
            return None
        self.renew_at = mono + self.lease / 3
        # A worker heartbeats every worker_heartbeat s whatever the lease; a window shorter
        # than that (lease < ~2 s) would drop healthy workers' leases.
        fresh = mono - max(self.lease / 2, 3 * self.worker_heartbeat)
        return [(a.id, a.attempt) for w in pool.workers.values()
                if w.last_seen >= fresh for a in w.assignments()]

    def lost(self, pool: Pool, mono: float) -> list[tuple[int, int]]:
        """Held (job, attempt) pairs the file no longer gives to us, when a check is due."""
        if not (self.check_now or mono >= self.held_at):
            return []
        self.check_now = False
        self.held_at = mono + HELD_CHECK
        # pairs, not a dict by id: a frozen worker may still hold an attempt of a job that
        # another worker of ours now runs under the next number
        busy = {(a.id, a.attempt) for w in pool.workers.values() for a in w.assignments()
                if not a.withdrawn}
        if not busy:
            return []
        held = self.store.held_by(self.prefix)
        return [(job_id, attempt) for job_id, attempt in busy if held.get(job_id) != attempt]

    def give_back_strays(self, tx: Tx, pool: Pool,
                         waiting: Iterable[tuple[int, int]]) -> list[int]:
        """In the caller's transaction, give back the running jobs the store leases to us that
        no worker of ours runs or was sent and whose outcome is not ``waiting`` to be written:
        a claim whose commit reached the store though its answer was lost (the connection
        dropped at COMMIT) left them leased to us with no worker, to sit until their lease
        ran out and be rescued as a crash. They never reached a worker, so the claim is
        undone (the attempt number given back, nothing counted). Returns their ids."""
        ours = {(a.id, a.attempt) for w in pool.workers.values() for a in w.assignments()}
        ours.update(waiting)
        back: list[int] = []
        for row in tx.leases_of(self.prefix):
            pair = (int(row["id"]), int(row["attempt"]))
            # guarded by attempt and state: one rescued or cancelled meanwhile is left alone
            if pair not in ours and tx.unclaim(*pair):
                back.append(pair[0])
        return back

    def clock_step(self) -> float:
        """The wall clock's step since the last look (0.0 when under ``CLOCK_STEP``). After a
        step every lease on the host looks expired (forward) or long (back): ours are renewed
        at once, and the caller holds rescues back for one lease so every live supervisor
        renews before any is judged."""
        offset = time.time() - time.monotonic()
        step = offset - self.clock_offset
        self.clock_offset = offset
        if abs(step) < CLOCK_STEP:
            return 0.0
        log.warning("the wall clock stepped %+.1f s: renewing leases now, rescuing none for "
                    "%g s", step, self.lease)
        self.renew_at = time.monotonic()
        return step
