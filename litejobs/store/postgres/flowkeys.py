"""Flow keys' rates inside a PostgreSQL claim: the sliding window of a key's starts
(``flow_starts``, each start counted while its ``until``, start + window, is ahead on the
server's clock), with the SQLite store's meaning (litejobs/store/flowkeys.py).

Exact across hosts: a claim counts a key's starts only while it holds the key's advisory
lock (the one ``claims._keyed`` takes for the key's concurrency, never waited for: a key
another claimer holds is passed over), and writes the starts it makes in the same
transaction, so the next claimer of the key, on any host, counts them.

There is no parking (no ``flow_waits`` rows): as for a full concurrency key, a claim looks
past a key over its rate, and learns through ``next_slot`` when its window has room again.
A rated job is not sent ahead to a worker still busy with another (its start would not be
known), as for a rate-limited queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.store.flowkeys import flow_window
from litejobs.store.postgres.sql import NOW

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgFlowKeysMixin"]

# Keys' windows now: how many starts each counts, when its first leaves, the server's now.
FLOW_WINDOWS = f"""
SELECT k.key, count(s.until) AS used, min(s.until) AS first, {NOW} AS now
FROM unnest(%s::text[]) AS k (key)
LEFT JOIN flow_starts s ON s.key = k.key AND s.until > {NOW}
GROUP BY k.key
"""
# (keys, windows): one start per element, counted for its window's length from now.
FLOW_STARTS = f"""
INSERT INTO flow_starts (key, until)
SELECT u.key, {NOW} + u.secs FROM unnest(%s::text[], %s::float8[]) AS u (key, secs)
"""
FLOW_FORGET = f"""
DELETE FROM flow_starts WHERE ctid IN (
    SELECT ctid FROM flow_starts WHERE until <= {NOW} LIMIT %s)
"""


class PgFlowKeysMixin:
    """``PgTx``'s flow-key statements (used by ``PgClaimsMixin``)."""

    conn: psycopg.Connection[Any]
    next_slot: float | None

    def _flow_used(self, keys: Iterable[str], now: float) -> dict[str, tuple[int, float]]:
        """``{key: (starts its window counts, seconds until the first leaves it)}`` of keys
        whose advisory lock this transaction holds."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        return {str(r["key"]): (int(r["used"]), 0.0 if r["first"] is None else
                                max(0.0, float(r["first"]) - float(r["now"])))
                for r in self.conn.execute(FLOW_WINDOWS, (wanted,)).fetchall()}

    def _flow_full(self, wait: float, now: float) -> None:
        """A key's window is full for ``wait`` seconds more: the claimer looks again then."""
        at = now + wait
        if self.next_slot is None or at < self.next_slot:
            self.next_slot = at

    def _flow_started(self, starts: Sequence[tuple[str, float]]) -> None:
        """Record a start of each (key, period)."""
        if starts:
            self.conn.execute(FLOW_STARTS, ([k for k, _ in starts],
                                            [float(flow_window(p)) for _, p in starts]))

    def _flow_forget(self, limit: int = 1000) -> int:
        """Delete starts that left their window."""
        return int(self.conn.execute(FLOW_FORGET, (limit,)).rowcount)
