"""The claimer: the supervisor's one write transaction per loop turn.

Outcomes waiting to be recorded, promotions of scheduled jobs that are due, lease renewals,
expiry and the claim of jobs for free worker slots go into one transaction (one commit for
many jobs) when any of them has something to do. It also knows when it next has work
without being woken: the next scheduled job's time, a rate-limited queue's next slot, the
fallback poll.

A turn that ended in an error may have committed all the same (the connection dropped at
COMMIT, after the server had it): the next turn's transaction first gives back the jobs the
store leases to us that no worker of ours holds (``Leases.give_back_strays``), so a claim
whose answer was lost does not leave its jobs waiting for their lease to run out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from litejobs.config import Config, parse_rate
from litejobs.dispatch import Dispatcher
from litejobs.figures import Figures
from litejobs.leases import Leases
from litejobs.outcomes import Outcome, Outcomes
from litejobs.pool import Pool
from litejobs.store import QueueLimits, Row, Store, Tx
from litejobs.store.protocols import Ringer

__all__ = ["POLL", "PROGRESS_WRITES", "Claimer"]

log = logging.getLogger("litejobs")

POLL = 1.0  # fallback claim/promote poll when no bell rings (seconds)
#: Seconds between two transactions run for jobs' progress alone: however many jobs report
#: (each at most every protocol.PROGRESS_INTERVAL), progress costs at most a few commits a
#: second. Any transaction that runs anyway takes every progress waiting with it.
PROGRESS_WRITES = 0.25


class Claimer:
    """Runs the loop's write transaction and keeps what decides when it is due."""

    def __init__(self, store: Store, config: Config, queues: Sequence[str] | None, pool: Pool,
                 dispatch: Dispatcher, outcomes: Outcomes, leases: Leases, now: float) -> None:
        self.store = store
        self.config = config
        self.queues = list(queues) if queues else None
        self.pool = pool
        self.dispatch = dispatch
        self.outcomes = outcomes
        self.leases = leases
        self.wake = True  # a ring or a finished job: claim at the next turn
        self.next_due: float | None = None  # earliest run_at of a scheduled job
        self.due_stale = True  # next_due must be read again (a ring, a poll, a promotion)
        self.next_slot: float | None = None  # when a rate-limited queue may start a job again
        self.poll_at = now  # monotonic
        self.progress_at = now  # monotonic: a transaction for progress alone may run from then
        self.bell: Ringer | None = None  # rings the other supervisors when steps became ready
        #: Outcomes, durations and pickup delays counted, written once a second (see figures)
        self.figures = Figures()
        # A store that can claim for idle workers in one statement (PostgreSQL): a turn with
        # nothing else to write skips the transaction's round trips (see quick_claim).
        self.claim_alone = getattr(store, "claim_alone", None)
        self.limited = sorted(name for name, q in config.queues.items()
                              if q.concurrency is not None or q.rate_limit)
        self.quick_after = now  # monotonic: after a refusal, the full transaction until then
        #: A turn ended in an error: whether it committed is unknown (see the module's
        #: docstring). The next turn runs the transaction, strays given back first.
        self.unsure = False

    def step(self, now: float, mono: float, draining: bool) -> tuple[bool, list[Outcome]]:
        """One turn's transaction, if anything is due. Returns whether the fallback poll came
        round and the outcomes it recorded."""
        idle: list[str] = []
        slots: list[str] = []
        if not draining:
            idle = self.dispatch.idle_slots(now)
            slots = idle + self.dispatch.ahead_slots(now)
        polled = mono >= self.poll_at
        if polled:
            self.poll_at = mono + POLL
            self.wake = True
            self.due_stale = True
        if self.due_stale:
            self.due_stale = False
            self.next_due = self._local(self.store.next_scheduled())
        promote = self.next_due is not None and self.next_due <= now
        slot = self.next_slot is not None and now >= self.next_slot
        claim = bool(slots) and (self.wake or promote or slot)
        # Expired jobs are never claimed (the claim filters them); marking them cancelled
        # runs on the poll, so a job ends cancelled within a second of its time running out
        # without costing every claim a statement.
        expire = polled
        leases = self.leases.renewals(self.pool, mono)
        progressed = bool(self.outcomes.progress) and mono >= self.progress_at
        unsure = self.unsure
        alone = not (self.outcomes or promote or expire or leases is not None or progressed
                     or unsure)
        if (claim and alone and idle and self.claim_alone is not None
                and mono >= self.quick_after and self.quick_claim(idle, now, mono)):
            return polled, []
        if alone and not claim:
            if slot and not slots:
                self.next_slot = None  # a worker finishing will claim again anyway
            return polled, []
        outcomes = self.outcomes.take()
        progress = self.outcomes.take_progress()
        figures = self.figures.rows() if polled and self.figures else None
        if progress:
            self.progress_at = mono + PROGRESS_WRITES
        lease = self.config.lease

        def work(tx: Tx) -> tuple[list[Row], list[tuple[int, int]], float | None, list[int]]:
            tx.set_progress_many(progress)  # first: fenced to attempts still running
            due = self.outcomes.record(tx, outcomes)
            # before this turn's claim: its jobs are not handed out yet
            back = self.leases.give_back_strays(
                tx, self.pool, [(o.a.id, o.a.attempt) for o in outcomes]) if unsure else []
            if promote:
                tx.promote_due(now)
            lost = tx.renew(leases, now + lease) if leases else []
            rows: list[Row] = []
            if expire and tx.expire_due(now):
                tx.figure_expired(now)
            if figures:
                tx.add_figures(figures)
            if claim:
                rows = tx.claim(slots, self.served(tx.queues()), now, lease, len(idle))
                self.next_slot = tx.next_slot
            return rows, lost, due, back

        try:
            rows, lost, due, back = self.store.write(work)
        except BaseException:
            self.outcomes.pending[:0] = outcomes  # recorded by the next transaction
            self.outcomes.keep_progress(progress)
            self.unsure = True
            raise
        if unsure:
            self.unsure = False
            _gave_back(back)
        if figures:
            self.figures.clear()
        self.figures.ended(outcomes, now)
        self.figures.claimed(rows, now)
        if due is not None:
            self.next_due = due if self.next_due is None else min(self.next_due, due)
        if claim:
            self.wake = len(rows) == len(slots)
        for job_id, attempt in lost:
            self.dispatch.lost(job_id, attempt)
        # handed out before the calls below, which may fail: claimed jobs never wait on them
        self._hand_out(rows, now)
        if promote:
            self.next_due = self._local(self.store.next_scheduled())
        if any(o.a.step or o.kind == "then" for o in outcomes):
            # A step's end may have readied steps (queued, or scheduled with a delay), maybe
            # of a queue only another supervisor serves: it is rung like an enqueue rings it.
            self.wake = True
            self.due_stale = True
            if self.bell is None:
                self.bell = self.store.bell()
            self.bell.ring(b"e")
        return polled, outcomes

    def quick_claim(self, idle: list[str], now: float, mono: float) -> bool:
        """Claim for the idle workers in one statement (the store's ``claim_alone``): an
        enqueue that wakes an idle supervisor then costs it one round trip to the server, not
        a transaction's five. False when the store left it to the full transaction (a queue
        with limits or keyed jobs); that one then runs, and is used alone for a poll's time."""
        assert self.claim_alone is not None
        try:
            rows: list[Row] | None = self.claim_alone(idle, self.queues, self.limited,
                                                      self.config.lease)
        except BaseException:
            self.unsure = True  # the statement may have claimed jobs all the same
            raise
        if rows is None:
            self.quick_after = mono + POLL
            return False
        self.figures.claimed(rows, now)
        # all taken: more may wait, and the places behind running jobs were not offered
        self.wake = len(rows) == len(idle)
        self._hand_out(rows, now)
        return True

    def _hand_out(self, rows: list[Row], now: float) -> None:
        """Send claimed ``rows`` to workers; a failure (a bug) leaves the turn unsure, so the
        rows not handed out are given back by the next one."""
        try:
            self.dispatch.hand_out(rows, now)
        except BaseException:
            self.unsure = True
            raise

    def _local(self, stored: float | None) -> float | None:
        """A time read back from the store as a time of this host's clock: a PostgreSQL
        server's clock may differ from ours, and the loop sleeps by ours."""
        return None if stored is None else stored - self.store.clock_offset()

    def served(self, known: list[tuple[str, bool]]) -> list[QueueLimits]:
        """The queues this supervisor claims from now, with their configured limits."""
        paused = {name for name, p in known if p}
        names = self.queues or [name for name, _ in known]
        out: list[QueueLimits] = []
        for name in names:
            if name in paused:
                continue
            q = self.config.queues.get(name)
            rate = parse_rate(q.rate_limit) if q is not None and q.rate_limit else None
            out.append(QueueLimits(name, q.concurrency if q is not None else None, rate))
        return out

    def flush(self) -> None:
        """Record the outcomes still waiting and write the figures counted (at shutdown)."""
        if self.outcomes or self.outcomes.progress or self.figures:
            outcomes = self.outcomes.take()
            progress = self.outcomes.take_progress()
            self.figures.ended(outcomes, time.time())
            figures = self.figures.rows()

            def work(tx: Tx) -> None:
                tx.set_progress_many(progress)
                self.outcomes.record(tx, outcomes)
                tx.add_figures(figures)

            self.store.write(work)
            self.figures.clear()
        if self.unsure:  # a stray would otherwise wait for its lease (we leave no heartbeat)
            def strays(tx: Tx) -> list[int]:
                return self.leases.give_back_strays(tx, self.pool, [])

            _gave_back(self.store.write(strays))
            self.unsure = False

    def instants(self) -> list[float | None]:
        """Wall-clock times it next has work without being woken."""
        progress = None
        if self.outcomes.progress:
            progress = time.time() + max(0.0, self.progress_at - time.monotonic())
        return [self.next_due, self.next_slot, progress]


def _gave_back(ids: list[int]) -> None:
    """The one line for the strays ``Leases.give_back_strays`` gave back, if any."""
    if ids:
        log.warning("gave back %d job(s) claimed by an earlier transaction whose answer was "
                    "lost but which had committed (job %s): back to queued, not counted as "
                    "attempts", len(ids), ", ".join(map(str, ids)))
