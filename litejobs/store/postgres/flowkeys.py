"""Flow keys' rates inside a PostgreSQL claim: the sliding window of a key's starts
(``flow_starts``, each start counted while its ``until``, start + window, is ahead on the
server's clock), with the SQLite store's meaning (litejobs/store/flowkeys.py).

Exact across hosts: a claim counts a key's starts only while it holds the key's advisory
lock (the one ``claims._keyed`` takes for the key's concurrency, never waited for: a key
another claimer holds is passed over), and writes the starts it makes in the same
transaction, so the next claimer of the key, on any host, counts them.

A key over its rate has its queued rated jobs parked (``parked``, as a full concurrency key's,
so later claims skip them without reading them) and a row in ``flow_waits`` with the moment
its window has room again, both written under the key's lock; a claim that fills a key's
window writes its wait too (jobs of the key parked earlier have nothing else to bring them
back). The first claim at or after that moment, on any host, takes the key's lock (never
waited for: a key another claimer holds stays due for the next claim), counts the window and
gives back as many of the key's best parked jobs as it has room for, or writes the wait
again. The claimer learns the next wait's end through ``next_slot``. Parking is only a
saving: every start is still counted in the claim itself. Why: without it a claim looked
past every blocked key's jobs, 46-83 ms a claim with 2,000 keys blocked, and a few rounds of
looking could not reach a key behind them at all (bench/results-postgres.md).
A rated job sent ahead to a worker still busy with another has its start "not yet known"
(``until`` +infinity and its ``job_id``, see ``ratestarts``), as for a rate-limited queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.store.flowkeys import flow_window
from litejobs.store.postgres.sql import LOCK_CKEY, NOW
from litejobs.store.ratestarts import RATE_MARGIN

if TYPE_CHECKING:
    import psycopg

__all__ = ["FLOW_DUE_PER_CLAIM", "FLOW_UNTIL", "PgFlowKeysMixin"]

# Keys' windows now: how many starts each counts, when its first of known time leaves (NULL
# when none is known), the server's now.
FLOW_WINDOWS = f"""
SELECT k.key, count(s.until) AS used, min(s.until) FILTER (WHERE s.job_id IS NULL) AS first,
       {NOW} AS now
FROM unnest(%s::text[]) AS k (key)
LEFT JOIN flow_starts s ON s.key = k.key AND s.until > {NOW}
GROUP BY k.key
"""
# (keys, windows, job ids): one start per element, counted for its window's length from now;
# with a job id (not NULL), a start not yet known (+infinity until its job is known to begin).
FLOW_STARTS = f"""
INSERT INTO flow_starts (key, until, job_id)
SELECT u.key, CASE WHEN u.job IS NULL THEN {NOW} + u.secs ELSE 'infinity'::float8 END, u.job
FROM unnest(%s::text[], %s::float8[], %s::bigint[]) AS u (key, secs, job)
"""
#: The length of the window of a flow_starts row's job, for a start not yet known getting
#: its time (its rate is the job's: flowkeys.flow_window in SQL).
FLOW_UNTIL = (f"coalesce((SELECT j.flow_period + least({RATE_MARGIN!r}, j.flow_period * 0.1) "
              "FROM jobs j WHERE j.id = flow_starts.job_id), 0)")
_NOT_RUNNING = """job_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM jobs WHERE jobs.id = {table}.job_id AND state = 'running')"""
# Once a poll: starts never reported whose job no longer runs (cancelled while sent ahead,
# its supervisor rescued) count from now (the SQLite store's RATE_LEFT and FLOW_LEFT), and
# starts that left their window go. One statement: the updated rows are not ones it deletes.
FLOW_FORGET = f"""
WITH rate_left AS (
    UPDATE rate_starts SET at = {NOW}, job_id = NULL
    WHERE {_NOT_RUNNING.format(table="rate_starts")}
), flow_left AS (
    UPDATE flow_starts SET until = {NOW} + {FLOW_UNTIL}, job_id = NULL
    WHERE {_NOT_RUNNING.format(table="flow_starts")}
)
DELETE FROM flow_starts WHERE ctid IN (
    SELECT ctid FROM flow_starts WHERE until <= {NOW} LIMIT %s)
"""


# (keys, most jobs): park the keys' queued rated jobs (rows another claimer holds skipped).
PARK_RATED = """
UPDATE jobs SET parked = true WHERE id IN (
    SELECT id FROM jobs
    WHERE state = 'queued' AND NOT parked AND concurrency_key = ANY(%s)
      AND flow_rate IS NOT NULL
    LIMIT %s FOR UPDATE SKIP LOCKED)
"""
# (keys, seconds from now): each key's window has room again then.
FLOW_WAITS = f"""
INSERT INTO flow_waits (key, until, since)
SELECT u.key, {NOW} + u.secs, {NOW} FROM unnest(%s::text[], %s::float8[]) AS u (key, secs)
ON CONFLICT (key) DO UPDATE SET until = excluded.until, since = excluded.since
"""
# Seconds until the first wait ends (<= 0: some key's wait has ended; NULL: none waits).
FLOW_NEXT_WAIT = f"SELECT min(until) - {NOW} AS wait, count(*) AS n FROM flow_waits"
FLOW_DUE = f"SELECT key FROM flow_waits WHERE until <= {NOW} ORDER BY until LIMIT %s"
FLOW_WAIT_DONE = "DELETE FROM flow_waits WHERE key = %s"
# The rate of a key's best parked rated job: the one its window is measured for.
FLOW_BEST_PARKED = """
SELECT flow_rate, flow_period FROM jobs
WHERE state = 'queued' AND parked AND concurrency_key = %s AND flow_rate IS NOT NULL
ORDER BY priority DESC, run_at, id LIMIT 1
"""
# (key, how many): a key's best parked jobs back to the claims.
FLOW_UNPARK = """
UPDATE jobs SET parked = false WHERE id IN (
    SELECT id FROM jobs WHERE state = 'queued' AND parked AND concurrency_key = %s
    ORDER BY priority DESC, run_at, id LIMIT %s FOR UPDATE SKIP LOCKED)
"""

#: Most keys whose wait ended that one claim handles (the rest: the claim after it).
FLOW_DUE_PER_CLAIM = 100
#: Most rated jobs one claim parks (a long backlog is parked over a few claims).
PARK_RATED_PER_CLAIM = 10_000
#: A due key another claimer holds: looked at again this much later (seconds).
_HELD_RETRY = 0.05


class PgFlowKeysMixin:
    """``PgTx``'s flow-key statements (used by ``PgClaimsMixin``)."""

    conn: psycopg.Connection[Any]
    next_slot: float | None

    def _flow_used(self, keys: Iterable[str], now: float,
                   ) -> dict[str, tuple[int, float | None]]:
        """``{key: (starts its window counts, seconds until the first of known time leaves
        it)}`` of keys whose advisory lock this transaction holds (None: no start of known
        time, so none leaves sooner than a start made now would)."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        return {str(r["key"]): (int(r["used"]), None if r["first"] is None else
                                max(0.0, float(r["first"]) - float(r["now"])))
                for r in self.conn.execute(FLOW_WINDOWS, (wanted,)).fetchall()}

    def _flow_full(self, wait: float, now: float) -> None:
        """A key's window is full for ``wait`` seconds more: the claimer looks again then."""
        at = now + wait
        if self.next_slot is None or at < self.next_slot:
            self.next_slot = at

    def _flow_started(self, starts: Sequence[tuple[str, float, int | None]]) -> None:
        """Record a start of each (key, period, job id of a start not yet known or None)."""
        if starts:
            self.conn.execute(FLOW_STARTS, ([k for k, _, _ in starts],
                                            [float(flow_window(p)) for _, p, _ in starts],
                                            [j for _, _, j in starts]))

    def _flow_forget(self, limit: int = 1000) -> int:
        """Give starts never reported whose job no longer runs the time now, and delete
        starts that left their window (both windows' unknown starts; flow keys' forgotten)."""
        return int(self.conn.execute(FLOW_FORGET, (limit,)).rowcount)

    def _flow_park(self, waits: dict[str, tuple[float, bool]]) -> None:
        """Write each key's wait (seconds from now, and whether it was found over its rate:
        then its queued rated jobs are parked too); this transaction holds each key's lock."""
        over = sorted(k for k, (_, park) in waits.items() if park)
        if over:
            self.conn.execute(PARK_RATED, (over, PARK_RATED_PER_CLAIM))
        if waits:
            keys = sorted(waits)
            self.conn.execute(FLOW_WAITS, (keys, [waits[k][0] for k in keys]))

    def _flow_waits_due(self, now: float) -> int:
        """Give back the parked jobs of keys whose wait has ended (as many as each window
        has room for; a window still full gets its wait again); ``next_slot`` learns the next
        wait's end. Returns how many keys wait (read before). One read of an empty table
        when no key waits."""
        conn = self.conn
        wait = conn.execute(FLOW_NEXT_WAIT).fetchone()
        if wait is None or wait["wait"] is None:
            return 0
        waiting = int(wait["n"])
        if float(wait["wait"]) <= 0:
            held_elsewhere = False
            for row in conn.execute(FLOW_DUE, (FLOW_DUE_PER_CLAIM,)).fetchall():
                key = str(row["key"])
                if not conn.execute(LOCK_CKEY, (key,)).fetchone()["held"]:  # type: ignore[index]
                    held_elsewhere = True  # its holder may be parking it: next claim
                    continue
                conn.execute(FLOW_WAIT_DONE, (key,))
                best = conn.execute(FLOW_BEST_PARKED, (key,)).fetchone()
                if best is None:
                    continue  # nothing of the key waits for its rate
                count, period = int(best["flow_rate"]), float(best["flow_period"])
                used, first = self._flow_used([key], now)[key]
                if used < count:
                    conn.execute(FLOW_UNPARK, (key, count - used))
                else:
                    self._flow_park({key: (flow_window(period) if first is None else first,
                                           True)})
            wait = conn.execute(FLOW_NEXT_WAIT).fetchone()
            if wait is None or wait["wait"] is None:
                return waiting
            if held_elsewhere:
                self._flow_full(max(_HELD_RETRY, float(wait["wait"])), now)
                return waiting
        self._flow_full(max(0.0, float(wait["wait"])), now)
        return waiting
