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

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import apsw

from litejobs.config import is_postgres_url, redacted_url
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
           "SqliteStore", "Store", "Tx", "is_url", "open_store",
           "same_database", "sent_order", "shown", "verify"]


def is_url(database: str | os.PathLike[str]) -> bool:
    """Whether ``database`` names a PostgreSQL database (a URL) rather than a SQLite file."""
    return is_postgres_url(os.fspath(database))


def shown(database: str) -> str:
    """``database`` as messages show it: a URL without its password, a path as it is."""
    return redacted_url(database) if is_url(database) else database


def _sans_password(url: str) -> str:
    parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username is not None:
        netloc = f"{parts.username}@{netloc}"
    return parts._replace(netloc=netloc).geturl()


def same_database(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name one database: one file (real paths), or URLs equal once
    their passwords are left out (a supervisor given the URL without a password, from a
    ~/.pgpass, serves the App's database)."""
    if is_url(a) or is_url(b):
        return is_url(a) and is_url(b) and _sans_password(a) == _sans_password(b)
    return os.path.realpath(a) == os.path.realpath(b)


def verify(database: str) -> None:
    """Check that ``database`` is usable by this version before a supervisor serves it: a
    file's integrity and schema; a PostgreSQL database's schema (another program's ``jobs``
    or a newer litejobs's refused), then made or migrated."""
    store = open_store(database)
    try:
        store.verify()
        if not store.local_file:
            store.pool()  # makes or migrates the schema: verify only reads
    finally:
        store.close()


def open_store(database: str | os.PathLike[str], *, durability: str = "full",
               cache_mb: int | None = None, connections: int = 4) -> Any:
    """The store of ``database``: the SQLite ``Store`` of a file path, the ``PostgresStore``
    of a ``postgresql://`` (or ``postgres://``) URL. The one way every caller opens a store.
    ``durability`` and ``cache_mb`` are the SQLite file's (a PostgreSQL server keeps its own
    settings); ``connections`` caps a PostgreSQL store's pool in this process. psycopg is
    imported only here, for a URL: a missing one is one ImportError line saying what to
    install."""
    if is_url(database):
        from litejobs.store.postgres import PostgresStore

        return PostgresStore(os.fspath(database), max_size=connections)
    return Store(database, durability=durability, cache_mb=cache_mb)


class Store(StoreReads, StoreAdmin, StoreMaintenance, StoreWorkflows, StoreMetrics,
            StoreBackup, StoreViews, StoreSchedules):
    """A litejobs database file (SQLite). Cheap to make; connections open lazily, one per
    thread. Implements every protocol of ``litejobs.store.protocols``."""

    #: The jobs are in a file of this host (see protocols.Bells).
    local_file = True
    inserts_ring = False  # (the App rings the file's bell after an insert)

    def bell(self) -> Bell:
        """Rings the supervisors listening beside this file."""
        from litejobs.bell import Bell

        return Bell(self.path)

    def bell_listener(self, name: str) -> BellListener:
        """A supervisor's socket beside this file (OSError when its directory is not ours
        to write)."""
        from litejobs.bell import BellListener

        return BellListener(self.path, name)

    def clock_offset(self) -> float:
        """0: every process on this host reads one clock."""
        return 0.0

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
    from litejobs.bell import Bell, BellListener
    from litejobs.store import protocols as p

    def _implements(store: Store, tx: Tx) -> tuple[
            p.Producer, p.Reads, p.ExplainFacts, p.Admin, p.Maintenance, p.Supervising,
            p.Workflows, p.Bells, p.WriteTx]:
        """mypy checks here that Store and Tx satisfy every protocol, signatures included."""
        return store, store, store, store, store, store, store, store, tx
