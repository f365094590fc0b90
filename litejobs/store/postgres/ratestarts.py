"""Starts not yet known on PostgreSQL, as in the SQLite store (litejobs/store/ratestarts.py).

A rated job (of a rate-limited queue, or with a rated flow key) that a claim sends ahead, to
a worker still running another job, starts when that job ends, which the claim cannot know.
Its row in ``rate_starts`` (``flow_starts``) is written with the time +infinity
(``'infinity'::float8``, which every window counts and none forgets) and its ``job_id``; the
oldest/first reads of a window leave such rows out, so a window full of them says "a whole
period from now" rather than "now". Then:

- its supervisor learns it began and records it (``record_starts``, in the outcome
  transaction): the row gets that time, counted back from the server's now;
- it is given back unstarted (``unclaim``): its rows go, in the unclaim's statement;
- it stops running with its start never reported (its worker or supervisor died, drain,
  rescue): counted as begun then (``_settle_unknown_start``), and the poll's safety net
  (``flowkeys.FLOW_FORGET``) does the same for any whose job no longer runs (cancelled while
  sent ahead, revoked after it was withdrawn).

Exact across hosts as the known starts are: the rows are written in the claim's transaction,
under the queue row's lock (or the key's advisory lock), and every window counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from litejobs.store.postgres.flowkeys import FLOW_UNTIL, PgFlowKeysMixin
from litejobs.store.postgres.sql import NOW

if TYPE_CHECKING:
    import psycopg

__all__ = ["STARTED", "PgRateStartsMixin"]

# (job ids, seconds ago): each job's start not yet known gets its time, in both windows (a
# flow key's start lasts its job's window from then).
STARTED = f"""
WITH s AS (
    SELECT * FROM unnest(%s::bigint[], %s::float8[]) AS s (id, ago)
), rate AS (
    UPDATE rate_starts SET at = {NOW} - s.ago, job_id = NULL
    FROM s WHERE rate_starts.job_id = s.id
)
UPDATE flow_starts SET until = {NOW} - s.ago + {FLOW_UNTIL}, job_id = NULL
FROM s WHERE flow_starts.job_id = s.id
"""


class PgRateStartsMixin(PgFlowKeysMixin):
    """The starts not yet known of ``PgClaimsMixin`` (``ClaimTx.record_starts``)."""

    conn: psycopg.Connection[Any]

    def record_starts(self, starts: Sequence[tuple[int, float, int]]) -> None:
        """Jobs sent ahead, claimed with their start not yet known, began: ``(job_id, when,
        unknown_start)`` each (``when``: the caller's clock when its supervisor learned it,
        no sooner than they began). Their rows in the windows get that time, taken as its
        distance back from the newest ``when`` among them, which is the server's now (as
        ``succeed_many`` counts times back). One statement whatever the windows."""
        if not starts:
            return
        ref = max(at for _, at, _ in starts)
        self.conn.execute(STARTED, ([int(i) for i, _, _ in starts],
                                    [float(ref - at) for _, at, _ in starts]))

    def _settle_unknown_start(self, job_id: int) -> None:
        """The job stopped running (its worker or supervisor died, or drain) with its start
        maybe never reported: counted as begun now, which is no sooner than it did."""
        self.conn.execute(STARTED, ([int(job_id)], [0.0]))
