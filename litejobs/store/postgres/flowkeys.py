"""Flow keys' rates inside a PostgreSQL claim: the sliding window of a key's starts
(``flow_starts``, each start counted while its ``until``, start + window, is ahead on the
server's clock), with the SQLite store's meaning (litejobs/store/flowkeys.py).

Exact across hosts: a claim counts a key's starts only while it holds the key's advisory
lock (the one ``claims._keyed`` takes for the key's concurrency, never waited for: a key
another claimer holds is passed over), and writes the starts it makes in the same
transaction, so the next claimer of the key, on any host, counts them.

There is no parking (no ``flow_waits`` rows): as for a full concurrency key, a claim looks
past a key over its rate, and learns through ``next_slot`` when its window has room again.
A rated job sent ahead to a worker still busy with another has its start "not yet known"
(``until`` +infinity and its ``job_id``, see ``ratestarts``), as for a rate-limited queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.store.flowkeys import flow_window
from litejobs.store.postgres.sql import NOW
from litejobs.store.ratestarts import RATE_MARGIN

if TYPE_CHECKING:
    import psycopg

__all__ = ["FLOW_UNTIL", "PgFlowKeysMixin"]

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
