"""Flow keys' rates inside a claim (schema 7): the sliding window of a key's starts, parking
the jobs of a key over its rate, and giving them back when the window has room again.

A key's jobs that cannot start because of its rate are parked (``parked = 1``), as a full
concurrency key's are, so claims skip them without reading them; the key gets a row in
``flow_waits`` with the moment its window has room again. The first claim at or after that
moment gives back as many of the key's best parked jobs as the window has room for; the
claimer learns the moment through ``next_slot``, as it learns a rate-limited queue's next
slot. A claim that fills a key's window writes the key's wait too: jobs of the key parked
earlier have nothing else to bring them back. Parking is only a saving: every start is still
checked against the window in the claim itself.

A rated job sent ahead to a worker that runs another job starts when that job ends (schema 8):
its row waits with ``until`` = +infinity and its ``job_id`` until its supervisor learns when it
began (``Tx.record_starts``); every window counts it meanwhile, and waits are measured from now.
"""

from __future__ import annotations

import math

import apsw

from litejobs.store.rows import _scalar

__all__ = ["FLOW_DUE_PER_CLAIM", "FlowKeysMixin", "flow_window"]

# The statements (schema 7). A start counts while `until` (its time + the window) is ahead.
# The starts a key's window counts, and the first to leave of known time (NULL: none known).
FLOW_WINDOW = """
SELECT count(*), min(until) FILTER (WHERE job_id IS NULL) FROM flow_starts
WHERE key = ? AND until > ?
"""
FLOW_START = "INSERT INTO flow_starts (key, until, job_id) VALUES (?, ?, ?)"
# Starts recorded "in the future" (the wall clock stepped back since) count from now; starts
# not yet known wait for their time (FLOW_STARTED).
FLOW_CLAMP = "UPDATE flow_starts SET until = ?2 WHERE key = ?1 AND until > ?2 AND job_id IS NULL"
# A start not yet known gets its time ?1 (see sql.RATE_STARTED), its window from its job's
# rate; the same at ?1 = now for the job's that stopped running without it (FLOW_LEFT).
_FLOW_UNTIL = """?1 + coalesce((SELECT j.flow_period + min(?2, j.flow_period * 0.1)
                               FROM jobs j WHERE j.id = flow_starts.job_id), 0)"""
FLOW_STARTED = f"UPDATE flow_starts SET until = {_FLOW_UNTIL}, job_id = NULL WHERE job_id = ?3"
FLOW_UNCLAIMED = "DELETE FROM flow_starts WHERE job_id = ?"
FLOW_LEFT = f"""
UPDATE flow_starts SET until = {_FLOW_UNTIL}, job_id = NULL
WHERE job_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM jobs WHERE jobs.id = flow_starts.job_id AND state = 'running')
"""
FLOW_FORGET = """
DELETE FROM flow_starts WHERE rowid IN (SELECT rowid FROM flow_starts WHERE until <= ? LIMIT ?)
"""
FLOW_WAIT = """
INSERT INTO flow_waits (key, until, since) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET until = excluded.until, since = excluded.since
"""
# The next wait's end, and the newest wait's start (after now: the wall clock stepped back).
FLOW_NEXT_WAIT = ("SELECT (SELECT min(until) FROM flow_waits), "
                  "(SELECT max(since) FROM flow_waits)")
FLOW_FIRST_WAIT = "SELECT min(until) FROM flow_waits"
FLOW_DUE = "SELECT key FROM flow_waits WHERE until <= ? ORDER BY until LIMIT ?"
FLOW_STEPPED_BACK = "SELECT key FROM flow_waits WHERE since > ? LIMIT ?"
FLOW_WAIT_DONE = "DELETE FROM flow_waits WHERE key = ?"
# The rate of a key's best parked rated job: the one its window is measured for.
FLOW_BEST_PARKED = """
SELECT flow_rate, flow_period FROM jobs
WHERE state = 'queued' AND parked = 1 AND concurrency_key = ? AND flow_rate IS NOT NULL
ORDER BY priority DESC, run_at, id LIMIT 1
"""
# As many of a key's best parked jobs back to the claims as its window has room for.
FLOW_UNPARK = """
UPDATE jobs SET parked = 0 WHERE id IN (
    SELECT id FROM jobs WHERE state = 'queued' AND parked = 1 AND concurrency_key = ?
    ORDER BY priority DESC, run_at, id LIMIT ?)
"""
# A claim found key ? over its rate: its queued rated jobs are parked until the window has
# room (flow_waits; FLOW_UNPARK gives them back).
PARK_RATED = """
UPDATE jobs SET parked = 1
WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND parked = 0 AND concurrency_key = ?
             AND flow_rate IS NOT NULL LIMIT ?)
"""

#: Most keys whose wait ended that one claim handles (~50 µs each: the claim holds the write
#: lock a few ms; the claim after it comes at once).
FLOW_DUE_PER_CLAIM = 100
#: Extra seconds (at most 10% of the period) a window lasts beyond its period: starts are
#: counted at claim, a job reaches its task a few ms later (the same as a queue's window).
_MARGIN = 0.1


def flow_window(period: float) -> float:
    """The seconds a start of a key with this rate period counts against the key."""
    return period + min(_MARGIN, period * 0.1)


class FlowKeysMixin:
    """The flow-key statements of ``ClaimsMixin``."""

    cursor: apsw.Cursor
    next_slot: float | None

    def _slot(self, queue: str, at: float, now: float) -> None:
        at = max(at, now)
        if self.next_slot is None or at < self.next_slot:
            self.next_slot = at

    def _flow_waits_due(self, now: float) -> None:
        """Give back the parked jobs of keys whose wait has ended; ``next_slot`` learns the
        next wait's end. One seek when no key waits."""
        first, newest = self.cursor.execute(FLOW_NEXT_WAIT).fetchone() or (None, None)
        if first is None:
            return
        if first <= now or (newest is not None and newest > now):
            # (newest > now: waits written before the wall clock stepped back, which may
            # hold the window shut for as long as it stepped: looked at again)
            due = [str(k) for (k,) in self.cursor.execute(
                FLOW_DUE if first <= now else FLOW_STEPPED_BACK,
                (now, FLOW_DUE_PER_CLAIM))]
            for key in due:
                self._flow_due(key, now)
            first = _scalar(self.cursor, FLOW_FIRST_WAIT)
        if first is not None:
            self._slot("", float(first), now)

    def _flow_due(self, key: str, now: float) -> None:
        cur = self.cursor
        cur.execute(FLOW_WAIT_DONE, (key,))
        best = cur.execute(FLOW_BEST_PARKED, (key,)).fetchone()
        if best is None:
            return  # nothing of the key waits (or only for a running job: jobs_unpark)
        count, period = int(best[0]), float(best[1])
        used, until = self._flow_used(key, count, period, now)
        if used < count:
            cur.execute(FLOW_UNPARK, (key, count - used))
        else:
            self._flow_wait(key, until, now)

    def _flow_used(self, key: str, count: int, period: float, now: float,
                  ) -> tuple[int, float]:
        """(starts of ``key`` in its window now, when the oldest of them leaves it)."""
        used, until = self.cursor.execute(FLOW_WINDOW, (key, now)).fetchone() or (0, None)
        if until is None:
            until = now + flow_window(period)  # (starts not yet known: none leaves sooner)
        if used >= count:
            # Starts "in the future" (the wall clock stepped back since) count as starting
            # now: left alone they would hold the window shut until the clock caught up.
            self.cursor.execute(FLOW_CLAMP, (key, now + flow_window(period)))
            if self.cursor.connection.changes():
                used, until = self.cursor.execute(
                    FLOW_WINDOW, (key, now)).fetchone() or (0, None)
                if until is None:
                    until = now + flow_window(period)
        return int(used), float(until)

    def _flow_wait(self, key: str, until: float, now: float) -> None:
        """Note that ``key``'s window has room again at ``until``."""
        until = max(until, now)
        self.cursor.execute(FLOW_WAIT, (key, until, now))
        self._slot("", until, now)

    def _flow_start(self, key: str, period: float, now: float, unknown: int | None = None,
                    ) -> float:
        """Record a start of ``key`` (a start not yet known: of job ``unknown``); returns
        when it leaves the window (for one not yet known, the soonest it can)."""
        until = now + flow_window(period)
        self.cursor.execute(FLOW_START, (key, until if unknown is None else math.inf, unknown))
        return until

    def _flow_park(self, key: str, limit: int) -> int:
        """Park ``key``'s queued rated jobs (at most ``limit``); returns how many."""
        self.cursor.execute(PARK_RATED, (key, limit))
        return self.cursor.connection.changes()

    def _flow_forget(self, now: float, limit: int = 1000) -> int:
        """Delete starts that left their window (the supervisor calls this once a poll), and
        give starts never reported (their job no longer runs) the time ``now``."""
        self.cursor.execute(FLOW_LEFT, (now, _MARGIN))
        self.cursor.execute(FLOW_FORGET, (now, limit))
        return self.cursor.connection.changes()
