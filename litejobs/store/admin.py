"""An operator's changes: cancel, retry, purge, pause. Each is one short guarded transaction;
the bulk ones take a page of ids at a time (the CLI pages with ``ids_matching``)."""

from __future__ import annotations

from collections.abc import Sequence

import apsw

from litejobs.job import State
from litejobs.store import sql
from litejobs.store.connections import Connections
from litejobs.store.retries import ManualRetry, blocking_root, retry_in
from litejobs.store.rows import _id_list
from litejobs.store.tx import Tx

__all__ = ["StoreAdmin"]


class StoreAdmin(ManualRetry, Connections):
    """The admin operations of Store (see protocols.Admin)."""

    def cancel(self, job_id: int, reason: str, now: float) -> bool:
        """Cancel a pending or running job; False when it is already terminal or missing."""

        def cancel(cur: apsw.Cursor) -> bool:
            row = cur.execute(sql.SELECT_FOR_CANCEL, (job_id,)).fetchone()
            if row is None:
                return False
            was, attempt, started, leased_by = row
            cur.execute(sql.CANCEL_JOB, (reason, now, job_id))
            if cur.connection.changes() != 1:
                return False
            if was == State.RUNNING.value:
                cur.execute(sql.RECORD_ATTEMPT, (job_id, attempt, "interrupted", leased_by, started,
                                             now, reason, None))
            Tx(cur).figure_cancelled([job_id], now)  # /metrics, in this transaction
            return True

        return self._transaction(self.connection(), cancel)

    def cancel_many(self, ids: Sequence[int], reason: str, now: float) -> int:
        """``cancel`` for many jobs in one short transaction (give it a page of ids, e.g. a
        thousand, not the whole table); returns how many were cancelled. Running ones keep
        an "interrupted" attempt; ring the bell with ``c`` afterwards so their supervisors
        stop them."""
        id_list = _id_list(ids)

        def cancel(cur: apsw.Cursor) -> int:
            cur.execute(sql.RECORD_CANCELLED_ATTEMPTS, (now, reason, id_list))
            cur.execute(sql.CANCEL_JOBS, (reason, now, id_list))
            cancelled = cur.connection.changes()
            if cancelled:
                Tx(cur).figure_cancelled(ids, now)  # /metrics, in this transaction
            return cancelled

        return self._transaction(self.connection(), cancel)

    def _blocking_root(self, job_id: int) -> tuple[int, str, str] | None:
        return blocking_root(Tx(self.connection().cursor()), job_id)  # reads only: no write lock

    def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue (persisted: every supervisor on the file obeys it)."""
        self._transaction(self.connection(),
                          lambda cur: cur.execute(sql.SET_PAUSED, (queue, int(paused))))


    def retry_many(self, ids: Sequence[int], retries: int, now: float,
                   blocked: list[tuple[int, int | None, str]] | None = None) -> int:
        """Manual retry of many failed or cancelled jobs, in one short transaction. Workflow
        steps whose upstream steps have not all succeeded, and tokens, are left as they are
        (listed in ``blocked``: id, the upstream step, task); the steps a retried one had
        cancelled go back to waiting."""

        def retry(cur: apsw.Cursor) -> int:
            def requeue(todo: Sequence[int]) -> int:
                cur.execute(sql.RETRY_JOBS, (now, retries + 1, _id_list(todo)))
                return cur.connection.changes()

            n, stuck = retry_in(Tx(cur), ids, retries, requeue)
            if blocked is not None:
                blocked[:] = stuck
            return n

        return self._transaction(self.connection(), retry)

    def purge(self, ids: Sequence[int]) -> int:
        """Delete terminal jobs (and their attempts) by id; others are left alone."""

        def purge(cur: apsw.Cursor) -> int:
            n = 0
            for job_id in ids:
                cur.execute("DELETE FROM jobs WHERE id = ? AND state IN "
                            "('succeeded', 'failed', 'cancelled')", (job_id,))
                n += cur.connection.changes()
            return n

        return self._transaction(self.connection(), purge)
