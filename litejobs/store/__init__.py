"""The job store: the only package that imports apsw or holds SQL.

One WAL-mode SQLite file holds every job, attempt, queue and supervisor. Each write is one short
``BEGIN IMMEDIATE`` transaction (a deferred one that upgrades to a write lock gets SQLITE_BUSY at
once, whatever the busy timeout), retried whole on SQLITE_BUSY with a bounded, jittered back-off.
Every state change is a guarded ``UPDATE … WHERE id = ? AND state IN (…)`` whose row count is
checked; finishing, retrying or renewing an attempt also matches the attempt number, the fencing
token that keeps a stale attempt from overwriting a newer one.

The rooms: ``protocols`` (the operations by caller: the seam a second store implements),
``connections`` (the file, its per-thread connections and transactions), ``reads``, ``admin``,
``maintenance`` (the operations by caller), ``tx`` (a write transaction's statements, with
``claims`` and ``inserts``), ``rows`` (rows and queue limits, without apsw), ``sql`` (every
statement), ``schema``, ``busy`` (waiting for the lock), ``failures`` (errors as one line),
``turns``. ``Store`` here puts them together and adds the producers' inserts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import apsw

from litejobs.store.admin import StoreAdmin
from litejobs.store.backups import StoreBackup
from litejobs.store.maintenance import StoreMaintenance
from litejobs.store.metric_reads import StoreMetrics
from litejobs.store.reads import StoreReads
from litejobs.store.runs import StoreWorkflows
from litejobs.store.schedules import StoreSchedules
from litejobs.store.schema import SCHEMA_VERSION
from litejobs.store.tx import RATE_MARGIN, NewJob, NewJobs, QueueLimits, Row, Tx, sent_order
from litejobs.store.views import StoreViews

__all__ = ["RATE_MARGIN", "SCHEMA_VERSION", "NewJob", "NewJobs", "QueueLimits", "Row",
           "SqliteStore", "Store", "Tx", "sent_order"]


class Store(StoreReads, StoreAdmin, StoreMaintenance, StoreWorkflows, StoreMetrics,
            StoreBackup, StoreViews, StoreSchedules):
    """A litejobs database file (SQLite). Cheap to make; connections open lazily, one per
    thread. Implements every protocol of ``litejobs.store.protocols``."""

    def insert_jobs(self, jobs: Sequence[NewJob | NewJobs], now: float,
                    ) -> list[Mapping[str, Any]]:
        """Insert ``jobs`` in one transaction; returns each one's row, in order.

        A job with a key whose live twin (same task and key, not failed or cancelled, younger
        than its ``unique_for``) exists returns that twin instead; the write lock makes this
        exact across processes.
        """

        conn = self.connection()
        known: set[str] = self._local.queues

        def insert(cur: apsw.Cursor) -> tuple[list[Mapping[str, Any]], set[str]]:
            # A copy per attempt: only a committed transaction's queues are known to exist.
            seen = set(known)
            return Tx(cur, seen).insert_many(jobs, now), seen

        rows, seen = self._transaction(conn, insert)
        if len(seen) > len(known):
            self._local.queues = seen
        return rows

    def insert_job(self, job: NewJob, now: float) -> Mapping[str, Any]:
        """``insert_jobs`` for one job (the common enqueue, kept short)."""
        conn = self.connection()
        known: set[str] = self._local.queues  # (set by connection())
        if job.key is not None or job.queue not in known:
            return self.insert_jobs([job], now)[0]
        return self._transaction(conn, lambda cur: Tx(cur, known).insert(job, now))


#: The SQLite store by the name that tells it from a second one.
SqliteStore = Store


if TYPE_CHECKING:
    from litejobs.store import protocols as p

    def _implements(store: Store, tx: Tx) -> tuple[
            p.Producer, p.Reads, p.ExplainFacts, p.Admin, p.Maintenance, p.Supervising,
            p.Workflows, p.WriteTx]:
        """mypy checks here that Store and Tx satisfy every protocol, signatures included."""
        return store, store, store, store, store, store, store, tx
