"""Parking a full concurrency key's queued jobs on PostgreSQL, as the SQLite store parks them
(``parked``): claims then skip them without reading them.

Why: a claim that meets a full key looks past its jobs; with a long backlog on one key (1 key
of limit 1, 20,000 queued jobs, beside 1,000 plain jobs) the look past them read every one of
its rows at every claim, 35-41 ms a claim against 0.7-0.8 ms without the backlog, and the
plain jobs drained at 40-53 jobs/s instead of ~1,200 (docs/postgres.md, Decisions).

- **Parked under the key's lock.** A claim parks a key's queued jobs (``PARK_KEY``, at most
  ``PARK_PER_CLAIM``, rows another claimer holds skipped) only while it holds the key's
  advisory lock and has counted the key's running jobs under it: the same lock that makes the
  key's limit exact across hosts.
- **Given back by the claims, not by a trigger.** The SQLite store unparks in a trigger as a
  job of the key stops running; here that trigger would have to wait for the key's lock (a
  claimer parking the key's jobs holds it, and its parked rows are not visible before it
  commits), and two supervisors recording outcomes of two keys in opposite orders would then
  deadlock. Instead every claim that looks at keyed jobs first gives each key with parked
  jobs and a free slot its best parked job back (``UNPARK_SWEEP``: one statement, one index
  seek per key with parked jobs), which the same claim may then take. A slot freed while a
  claimer parked is seen by the next claim, on whatever host. Giving back too many is
  harmless: a job given back is only a candidate, and the claim still counts the key.
- **A slow sweep is spaced out.** The sweep seeks once per key with parked jobs; with
  thousands of keys over their rate (parked and waiting, ``flowkeys``) it took 11-13 ms a
  claim with 2,000 keys and ~60 ms with 10,000, and an idle supervisor's pickup rose to
  120-280 ms. With ``SWEEP_SPACED_WAITS`` keys waiting or more, a sweep over ``SWEEP_QUICK``
  runs again only after ten times its length (and at each poll's ``expire_due``), so a slot
  freed on another host waits at most that long.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["PARK_KEY", "PARK_PER_CLAIM", "UNPARK_SWEEP", "PgParkingMixin"]

#: Most jobs one claim parks: a key that filled up with a long backlog is parked over a few
#: claims, each short (as the SQLite store's).
PARK_PER_CLAIM = 10_000

# (key, running jobs of the key, limit): park its queued jobs whose own limit is full.
PARK_KEY = """
UPDATE jobs SET parked = true WHERE id IN (
    SELECT id FROM jobs
    WHERE state = 'queued' AND NOT parked AND concurrency_key = %s
      AND coalesce(concurrency_limit, 1) <= %s
    LIMIT %s FOR UPDATE SKIP LOCKED)
"""
# Each key with parked jobs (a skip scan of jobs_parking), and its best parked job, back to
# the claims when the key has a slot free for it (one seek: a key's jobs share its limit, and
# looking for a lower one that fits would read the whole backlog of a full key at every
# claim). A key waiting for room in its rate window (flow_waits) is left alone: its wait gives
# its jobs back (flowkeys). Returns the ids given back.
UNPARK_SWEEP = """
UPDATE jobs SET parked = false WHERE id IN (
    WITH RECURSIVE k (ckey) AS (
        SELECT min(concurrency_key) FROM jobs
        WHERE state = 'queued' AND parked AND concurrency_key IS NOT NULL
        UNION ALL
        SELECT (SELECT min(concurrency_key) FROM jobs
                WHERE state = 'queued' AND parked AND concurrency_key > k.ckey)
        FROM k WHERE k.ckey IS NOT NULL
    )
    SELECT best.id FROM k CROSS JOIN LATERAL (
        SELECT p.id, coalesce(p.concurrency_limit, 1) AS room FROM jobs p
        WHERE p.state = 'queued' AND p.parked AND p.concurrency_key = k.ckey
        ORDER BY p.priority DESC, p.run_at, p.id LIMIT 1) best
    WHERE k.ckey IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM flow_waits w WHERE w.key = k.ckey)
      AND best.room > (
        SELECT count(*) FROM jobs r WHERE r.state = 'running' AND r.concurrency_key = k.ckey))
RETURNING id
"""


#: A sweep this quick (seconds), or with fewer keys than this waiting for their rate, runs
#: at every claim that looks at keyed jobs.
SWEEP_QUICK = 0.005
SWEEP_SPACED_WAITS = 500
# Per database and schema (the connection's DSN names both): when this process last swept
# and how long it took.
_SWEPT: dict[str, tuple[float, float]] = {}


class PgParkingMixin:
    """Parking and giving back (used by ``PgClaimsMixin``)."""

    conn: psycopg.Connection[Any]

    def _park(self, key: str, taken: int, limit: int = PARK_PER_CLAIM) -> int:
        """Park ``key``'s queued jobs that cannot run while ``taken`` of its jobs run (this
        transaction holds the key's advisory lock); returns how many."""
        return int(self.conn.execute(PARK_KEY, (key, taken, limit)).rowcount)

    def unpark_free(self) -> int:
        """Give each key with parked jobs and a free slot its best parked job back; returns
        how many (``expire_due`` does it once a poll; the claims through ``_unpark_soon``)."""
        start = time.perf_counter()
        given = int(self.conn.execute(UNPARK_SWEEP).rowcount)
        _SWEPT[self.conn.info.dsn] = (time.monotonic(), time.perf_counter() - start)
        return given

    def _unpark_soon(self, waiting: int) -> None:
        """A claim's sweep, ``waiting`` keys waiting for their rate (parked, ``flowkeys``):
        every claim while few wait or the sweep is quick; a slow one (it seeks once per key
        with parked jobs: 10,000 keys over their rate, ~60 ms) at most a tenth of the time,
        so a slot freed on another host is given back within ten sweeps' time (and by the
        next poll's ``expire_due``) rather than every claim paying for the walk. Only many
        waiting keys space it out: a sweep slowed by a busy machine is not."""
        at, took = _SWEPT.get(self.conn.info.dsn, (0.0, 0.0))
        if (waiting < SWEEP_SPACED_WAITS or took < SWEEP_QUICK
                or time.monotonic() - at >= took * 10):
            self.unpark_free()
