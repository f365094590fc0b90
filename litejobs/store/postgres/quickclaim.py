"""The PostgreSQL claim of an idle supervisor in one statement (``claim_alone``).

A supervisor woken by an enqueue, with nothing else to write, would otherwise run BEGIN, the
queues to visit, the claim (twice: the places that start at once, then those behind a running
job) and COMMIT: five round trips, each a wake-up of the server's backend and of the
supervisor. On a busy machine every wake-up waits for a CPU, and those round trips were most
of a pickup's time (bench/results-postgres.md, "Pickup latency"). Here the queues to visit
and the claim are one statement in autocommit, its own transaction: one round trip.

It claims only what ``PgTx.claim`` would claim for the same idle workers, with the same
locks and fencing (``FOR UPDATE SKIP LOCKED``, the attempt bumped, the lease on the server's
clock). What needs more than one statement is left to the full transaction: when a queue it
would visit has a concurrency or rate limit (its row must be locked and its running jobs or
starts counted first) or a queued job with a concurrency key (each key under its advisory
lock), it claims nothing and says so (None), and the caller runs the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from litejobs.store.claims import best_first
from litejobs.store.postgres.sql import CLAIMED, NOW, QUEUED_NAMES
from litejobs.store.rows import Row

if TYPE_CHECKING:
    import psycopg

    from litejobs.store.postgres.tx import PgTx

__all__ = ["CLAIM_ALONE", "PgQuickClaimMixin"]

T = TypeVar("T")

# (served queues or NULL for all, twice; limited queues, n, n, worker ids, lease seconds)
# -> whether a visited queue needs the full transaction (`blocked`, on every row) and the jobs
# claimed (the columns of sql.CLAIM's RETURNING; one row of NULLs when none was). The visited
# queues are those with queued jobs (one index seek each, as sql.QUEUES_TO_VISIT), served by
# the caller and not paused. When one is
# limited or holds a keyed job, `blocked` gates the claim off (a one-time filter: nothing is
# locked or written). Otherwise each queue's best n claimable jobs (unkeyed, not parked, not
# expired) are locked, the best n of all handed one per worker in order, as sql.CLAIM does
# for places that start at once.
CLAIM_ALONE = f"""
{QUEUED_NAMES}, visit AS (
    SELECT name FROM seen
    WHERE name IS NOT NULL AND (%s::text[] IS NULL OR name = ANY(%s::text[]))
      AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = seen.name AND q.paused)
), blocked AS (
    SELECT EXISTS (
        SELECT 1 FROM visit
        WHERE name = ANY(%s::text[])
           OR EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND queue = visit.name
                                           AND concurrency_key IS NOT NULL)) AS b
), picked AS (
    SELECT j.id, j.priority, j.run_at FROM visit CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM jobs
        WHERE state = 'queued' AND queue = visit.name AND NOT parked
          AND concurrency_key IS NULL AND (expires_at IS NULL OR expires_at >= {NOW})
        ORDER BY priority DESC, run_at, id
        LIMIT %s
        FOR UPDATE SKIP LOCKED) j
    WHERE NOT (SELECT b FROM blocked)
), best AS (
    SELECT id, row_number() OVER (ORDER BY priority DESC, run_at, id) AS n FROM picked
    ORDER BY priority DESC, run_at, id LIMIT %s
), claimed AS (
    UPDATE jobs SET state = 'running', attempt = attempt + 1,
                    leased_by = (%s::text[])[best.n], lease_until = {NOW} + %s,
                    started_at = {NOW}
    FROM best WHERE jobs.id = best.id
    RETURNING {CLAIMED}
)
SELECT (SELECT b FROM blocked) AS blocked, c.*
FROM (VALUES (1)) AS one (x) LEFT JOIN claimed c ON true
"""


class PgQuickClaimMixin:
    """``PostgresStore.claim_alone``: an idle supervisor's claim, one statement."""

    if TYPE_CHECKING:
        def _statement(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T: ...

        def write(self, fn: Callable[[PgTx], T]) -> T: ...

    def claim_alone(self, worker_ids: Sequence[str], served: Sequence[str] | None,
                    limited: Sequence[str], lease: float) -> list[Row] | None:
        """Claim up to ``len(worker_ids)`` queued jobs for idle workers, best first, one per
        worker, in one statement outside any transaction of the caller's: the rows
        ``PgTx.claim`` returns for places that start at once. ``served``: the queues this
        supervisor claims from (None: all); ``limited``: the queues with a concurrency or
        rate limit. None, with nothing claimed, when a queue it would visit is limited or
        holds a job with a concurrency key: those take the full transaction."""
        n = len(worker_ids)
        if n == 0:
            return []
        ids = list(worker_ids)
        names = None if served is None else list(served)

        def run(conn: psycopg.Connection[Any]) -> list[Row]:
            return list(conn.execute(CLAIM_ALONE, (
                names, names, list(limited), n, n, ids, float(lease))).fetchall())

        got = self._statement(run)
        if got[0]["blocked"]:
            return None
        rows = [r for r in got if r["id"] is not None]
        for r in rows:
            del r["blocked"]
        rows.sort(key=best_first)
        steps = [r["id"] for r in rows if r["workflow"] is not None]
        if steps:  # a workflow step takes its upstream steps' results to its worker
            results = self.write(lambda tx: tx.step_results(steps))
            for r in rows:
                if r["id"] in results:
                    r["results"] = results[r["id"]]
        return rows
