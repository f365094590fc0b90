"""The PostgreSQL store's claims, and the statements that make jobs ready for one.

A claim is one statement (``sql.CLAIM``): each queue's best claimable jobs, locked with
``FOR UPDATE SKIP LOCKED`` so that claimers on other hosts pass over them instead of waiting,
then the best of all handed one per worker. A queue with a concurrency limit has its row in
``queues`` locked first (``FOR UPDATE``, in name order): its running jobs are counted under
that lock, so the limit is exact across every claimer, whatever host it runs on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.store.claims import best_first
from litejobs.store.postgres import sql
from litejobs.store.rows import QueueLimits, Row

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgClaimsMixin"]


class PgClaimsMixin:
    """``PgTx``'s claim statements (the ``ClaimTx`` protocol)."""

    conn: psycopg.Connection[Any]
    next_slot: float | None

    def queues(self) -> list[tuple[str, bool]]:
        """Every queue with queued jobs, and every paused one, with its paused flag."""
        names: set[str] = set()
        paused: set[str] = set()
        for row in self.conn.execute(sql.QUEUES_TO_VISIT):
            (paused if row["paused"] else names).add(str(row["name"]))
        return [(name, name in paused) for name in sorted(names | paused)]

    def claim(self, worker_ids: Sequence[str], queues: Iterable[QueueLimits], now: float,
              lease: float, ahead_from: int | None = None) -> list[Row]:
        """Claim up to ``len(worker_ids)`` queued jobs of ``queues``, best first, one per
        worker, each with its attempt number bumped and a lease of ``lease`` seconds on the
        server's clock (``now`` is not read: expiry is judged on the server's clock too).

        ``worker_ids[ahead_from:]`` are places behind a running job: a job with an expiry
        only goes to the places before it, which start at once. A queue with a rate limit is
        refused (ValueError): the PostgreSQL store does not enforce rates yet.
        """
        self.next_slot = None
        n = len(worker_ids)
        if n == 0:
            return []
        queues = list(queues)
        for q in queues:
            if q.rate is not None:
                raise ValueError(
                    f"queue {q.name!r} has a rate limit, which the PostgreSQL store does not "
                    "enforce yet; remove its rate_limit or use a SQLite database")
        caps = {q.name: n for q in queues}
        limited = sorted({q.name for q in queues if q.concurrency is not None})
        if limited:
            conn = self.conn
            conn.execute(sql.INSERT_QUEUES, (limited,))
            conn.execute(sql.LOCK_QUEUES, (limited,))
            running = {r["queue"]: int(r["n"])
                       for r in conn.execute(sql.RUNNING_BY_QUEUE, (limited,))}
            for q in queues:
                if q.concurrency is not None:
                    caps[q.name] = min(caps[q.name], q.concurrency - running.get(q.name, 0))
        front = n if ahead_from is None else max(0, min(n, ahead_from))
        claimed: list[Row] = []
        for ahead, workers in ((False, worker_ids[:front]), (True, worker_ids[front:])):
            caps = {name: cap for name, cap in caps.items() if cap > 0}
            if not workers or not caps:
                continue
            rows = self.conn.execute(sql.CLAIM, (
                list(caps), list(caps.values()), ahead, list(workers), list(workers),
                float(lease))).fetchall()
            for row in rows:
                caps[row["queue"]] -= 1
            claimed.extend(rows)
        claimed.sort(key=best_first)
        return claimed

    def unclaim(self, job_id: int, attempt: int) -> bool:
        """Return a claimed job that never reached its worker to queued, taking back the
        attempt number."""
        return self.conn.execute(sql.UNCLAIM, (job_id, attempt)).rowcount == 1

    def adopt_orphan_queues(self) -> int:
        """Give every queue with queued jobs a row."""
        return self.conn.execute(sql.ADOPT_QUEUES).rowcount

    def unpark_free(self) -> int:
        """Nothing is parked in this store yet (it takes no concurrency keys): 0."""
        return 0

    def expire_due(self, now: float, limit: int = 500) -> int:
        """Cancel (reason "expired") pending jobs not started by their ``expires_at`` on the
        server's clock; returns how many."""
        return self.conn.execute(sql.EXPIRE_DUE, (limit,)).rowcount

    def promote_due(self, now: float, limit: int = 1000) -> int:
        """Queue the scheduled jobs whose run time has come on the server's clock."""
        return self.conn.execute(sql.PROMOTE_DUE, (limit,)).rowcount
