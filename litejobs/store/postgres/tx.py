"""One write transaction of the PostgreSQL store: ``PgTx``, which ``PostgresStore.write(fn)``
hands ``fn``. Here: outcomes fenced by the attempt number, and leases; claims come from
``claims``, inserts from ``inserts``, cron fires from ``cron``, pruning and heartbeats from
``upkeep``, the /metrics figures from ``figures``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.job import State
from litejobs.store.postgres import sql
from litejobs.store.postgres.bell import RING
from litejobs.store.postgres.claims import PgClaimsMixin
from litejobs.store.postgres.cron import PgCronMixin
from litejobs.store.postgres.figures import PgFiguresMixin
from litejobs.store.postgres.flows import PgFlowsMixin
from litejobs.store.postgres.inserts import PgInsertsMixin
from litejobs.store.postgres.upkeep import PgUpkeepMixin
from litejobs.store.rows import Row, _like_prefix

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgTx"]


def _ago(t: float | None, now: float) -> float | None:
    """How long before the caller's ``now`` a caller's time was (None stays None)."""
    return None if t is None else float(now - t)


class PgTx(PgClaimsMixin, PgInsertsMixin, PgCronMixin, PgUpkeepMixin, PgFiguresMixin,
           PgFlowsMixin):
    """The statements a supervisor (or a producer) runs inside one PostgreSQL transaction."""

    def __init__(self, conn: psycopg.Connection[Any], queues_seen: set[str] | None = None,
                 ) -> None:
        self.conn = conn
        self.next_slot: float | None = None
        self._keyless: set[str] = set()
        self._queues_seen: set[str] = set() if queues_seen is None else queues_seen

    # --- outcomes --------------------------------------------------------------------------------

    def succeed(self, job_id: int, attempt: int, result: str, worker: str, started: float,
                now: float) -> bool:
        """Record a successful attempt; False (and a ``stale`` attempt) if it lost its lease."""
        done = self.conn.execute(sql.FINISH_SUCCEEDED, (
            result, _ago(started, now), worker, job_id, attempt)).rowcount
        if done == 1:
            return True
        self._stale(job_id, attempt, worker, started, now, "reported success")
        return False

    def succeed_many(self, done: Sequence[tuple[int, int, str, str, float, float]]) -> int:
        """``succeed`` for many ``(job_id, attempt, result, worker, started, now)`` in one
        statement; returns how many were recorded (the others become ``stale`` attempts).
        Each one's times count back from the newest ``now`` among them."""
        if len(done) < 2:
            return sum(self.succeed(*d) for d in done)
        ref = max(d[5] for d in done)
        rows = self.conn.execute(sql.FINISH_SUCCEEDED_MANY, (
            [d[0] for d in done], [d[1] for d in done], [d[2] for d in done],
            [d[3] for d in done], [float(ref - d[4]) for d in done],
            [float(ref - d[5]) for d in done])).fetchall()
        recorded = {int(r["id"]) for r in rows}
        for job_id, attempt, _, worker, started, now in done:
            if job_id not in recorded:
                self._stale(job_id, attempt, worker, started, now, "reported success")
        return len(recorded)

    def set_progress_many(
            self, updates: Sequence[tuple[int, int, float | None, str | None, str | None]],
    ) -> int:
        """Write running jobs' newest ``(job_id, attempt, fraction, message, metadata)`` in
        one statement (metadata: JSON text of an object, merged as a JSON merge patch; None
        leaves a value as it is). An attempt no longer running is left alone. Returns how
        many jobs were written."""
        if not updates:
            return 0
        return self.conn.execute(sql.SET_PROGRESS_MANY, (
            [u[0] for u in updates], [u[1] for u in updates],
            [None if u[2] is None else float(u[2]) for u in updates],
            [u[3] for u in updates], [u[4] for u in updates])).rowcount

    def fail(self, job_id: int, attempt: int, error: str, traceback: str | None,
             worker: str | None, started: float | None, now: float, retry_at: float | None,
             crashed: bool = False) -> bool:
        """Record a failed attempt: scheduled again ``retry_at - now`` seconds from now on the
        server's clock, or failed when ``retry_at`` is None."""
        crash = 1 if crashed else 0
        if retry_at is None:
            ended = self.conn.execute(sql.FINISH_FAILED,
                                      (error, crash, job_id, attempt)).fetchone()
        else:
            state = State.SCHEDULED.value if retry_at > now else State.QUEUED.value
            ended = self.conn.execute(sql.FINISH_RETRY, (
                state, float(max(retry_at - now, 0.0)), error, crash, job_id,
                attempt)).fetchone()
        if ended is not None:
            self._attempt(job_id, attempt, "failed", worker, started, now, ended["now"], error,
                          traceback)
            if crashed:  # its worker or supervisor died: maybe before its start was reported
                self._settle_unknown_start(job_id)
            return True
        self._stale(job_id, attempt, worker, started, now, f"reported failure: {error}", error)
        return False

    def interrupt(self, job_id: int, attempt: int, reason: str, worker: str | None,
                  started: float | None, now: float) -> bool:
        """Put a running job back to queued without counting the attempt (drain)."""
        ended = self.conn.execute(sql.REQUEUE_INTERRUPTED, (job_id, attempt)).fetchone()
        if ended is not None:
            self._attempt(job_id, attempt, "interrupted", worker, started, now, ended["now"],
                          reason, None)
            self._settle_unknown_start(job_id)  # (a rescue cannot tell if it began)
            return True
        return False

    def _attempt(self, job_id: int, attempt: int, outcome: str, worker: str | None,
                 started: float | None, now: float, ended: float, error: str | None,
                 traceback: str | None) -> None:
        """The attempt's row: it ended at ``ended`` on the server's clock (the now of the
        statement that ended it), and began ``now - started`` seconds before."""
        self.conn.execute(sql.RECORD_ATTEMPT, (job_id, attempt, outcome, worker, ended,
                                               _ago(started, now), ended, error, traceback))

    def _stale(self, job_id: int, attempt: int, worker: str | None, started: float | None,
               now: float, what: str, error: str | None = None) -> None:
        """Record a refused outcome of ``attempt`` (``error``: the failure it reported) as a
        ``stale`` attempt, unless it is that attempt's recorded outcome written again."""
        self.conn.execute(sql.RECORD_STALE, {
            "job": job_id, "attempt": attempt, "worker": worker, "ago": _ago(started, now),
            "error": error,
            "stale": f"stale: attempt {attempt} {what} after losing its lease; outcome refused"})

    # --- the bell --------------------------------------------------------------------------------

    def ring(self, message: bytes = b"e") -> None:
        """Wake the supervisors listening to this store (``bell.PgBellListener``) when this
        transaction commits (a rolled-back one rings nothing)."""
        self.conn.execute(RING, (message.decode("ascii"),))

    # --- leases ----------------------------------------------------------------------------------

    def renew(self, leases: Iterable[tuple[int, int]], until: float) -> list[tuple[int, int]]:
        """Extend the leases of ``(job_id, attempt)`` pairs, in one statement, to ``until -
        time.time()`` seconds from now on the server's clock (``until`` is this process's
        clock: the protocol passes no ``now``); returns the pairs that were lost."""
        pairs = list(leases)
        if not pairs:
            return []
        rows = self.conn.execute(sql.RENEW_LEASES, (
            float(until - time.time()), [p[0] for p in pairs],
            [p[1] for p in pairs])).fetchall()
        kept = {(int(r["id"]), int(r["attempt"])) for r in rows}
        return [p for p in pairs if p not in kept]

    def expired_leases(self, now: float, limit: int = 500) -> list[Row]:
        """Running jobs whose lease ended on the server's clock, oldest lease first."""
        return list(self.conn.execute(sql.EXPIRED_LEASES, (limit,)).fetchall())

    def leases_of(self, prefix: str) -> list[Row]:
        """Running jobs whose ``leased_by`` starts with ``prefix`` (a supervisor's id)."""
        return list(self.conn.execute(sql.RUNNING_LEASES, (_like_prefix(prefix),)).fetchall())
