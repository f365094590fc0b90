"""The PostgreSQL store (``pip install 'litejobs[postgres]'``): litejobs's jobs in a PostgreSQL
database, for supervisors on many hosts. First increment: not yet selected by
``App("postgresql://...")`` (that still refuses at once, see ``litejobs.config``).

What it implements, with the SQLite store's meaning (tests/postgres/test_store_conformance.py
runs the same assertions on both):

- ``Producer``: ``insert_job``/``insert_jobs``, keys and ``unique_for`` and debounce included;
  a keyed insert holds an advisory lock on its task and key from its twin's lookup to its
  commit, so two producers of one key on any hosts make one job.
- ``Reads`` but the dashboard's pages: ``get_job``, ``list_jobs``, ``attempts``, ``stats``,
  ``queue_list``, ``supervisors``, ``cron_entries``, the stored schedules, the figures,
  counts and bulk operations' pages (``counts``); ``ExplainFacts``; ``Admin``:
  ``cancel``/``cancel_many``, ``retry``/``retry_many``, ``purge``, ``set_paused``,
  ``put_schedule``/``delete_schedule``; ``Supervising``: ``write``,
  ``write_with_schedules``, ``next_scheduled``, ``held_by``, ``close``.
- ``write(fn)`` hands ``fn`` a ``PgTx``: ``ClaimTx`` (a claim is one ``FOR UPDATE SKIP
  LOCKED`` statement; queue concurrency and rate limits exact across hosts under the queue's
  row lock, concurrency keys' limits under each key's advisory lock), ``LeaseTx``,
  ``OutcomeTx`` (each outcome and progress report fenced by the attempt number like the
  SQLite store's guarded UPDATEs), ``CronTx`` (each fire a unique (entry, instant) row
  written with its job, so an instant makes one job across hosts) and ``UpkeepTx``
  (pruning, the supervisors' heartbeat rows, the /metrics figures).
- The bell: ``PgTx.ring`` (``pg_notify``, delivered at commit) and ``bell.PgBellListener``
  (``LISTEN`` on the schema's channel, a socket to select on).
- Workflows and tokens: ``WorkflowTx`` (``flows``; the fan-in and the cascade are triggers
  of the schema, as in the SQLite store), ``Workflows`` and the retry that revives the steps
  a retried one cancelled (``runs``); the dashboard's job pages (``views``);
  ``Maintenance`` (``maintenance``: what only a file has is "not applicable", and a backup
  is pg_dump's); flow keys' rates in the claim (``flowkeys``), exact across hosts under
  each key's advisory lock.

Time: every time comparison and every stored time is on the database server's clock
(``statement_timestamp()``, one value per statement), so hosts' clocks may differ. The
``now`` a caller passes is its own clock at the call and is never compared with anything
stored: a time the caller gives (a run time, an expiry, a retry time, an attempt's start) is
taken as its distance from that ``now`` and stored as the server's now plus that distance.
``renew(leases, until)`` and the ``before`` of the prunes have no ``now``: their distance is
counted from this process's ``time.time()``. Cron instants are stored as given: they name
instants of a schedule (the fire's identity across hosts), not times measured from ``now``.
The times read back are the server's.

Errors: a server that cannot be reached or a connection lost mid-call raise StorageError in
one line, saying whether the call may have committed (a drop while its COMMIT was on the
way: maybe) or not, and the next call reconnects (the pool drops the broken connections).
A deadlock or serialization failure runs the transaction again whole. A pool is per
process, opened on first use; a forked child opens its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from litejobs.calls import ring_for
from litejobs.job import Attempt, State
from litejobs.newjob import NewJob, NewJobs
from litejobs.store.filters import JobLists
from litejobs.store.postgres import sql
from litejobs.store.postgres.bell import RING, PgBellListener
from litejobs.store.postgres.connections import PgConnections, driver, redacted
from litejobs.store.postgres.counts import PgCountsMixin
from litejobs.store.postgres.facts import PgFactsMixin
from litejobs.store.postgres.figures import FIGURE_READS
from litejobs.store.postgres.maintenance import PgMaintenanceMixin
from litejobs.store.postgres.quickclaim import PgQuickClaimMixin
from litejobs.store.postgres.runs import PgRunsMixin
from litejobs.store.postgres.schedules import PgSchedulesMixin
from litejobs.store.postgres.schema import SCHEMA_VERSION
from litejobs.store.postgres.tx import PgTx
from litejobs.store.postgres.upkeep import SELECT_CRON_ENTRIES, SELECT_SUPERVISORS
from litejobs.store.postgres.views import PgViewsMixin
from litejobs.store.rows import Row, _like_prefix

if TYPE_CHECKING:
    import psycopg

__all__ = ["SCHEMA_VERSION", "PgTx", "PostgresStore", "driver", "redacted"]

T = TypeVar("T")

#: Seconds between two measures of the server's clock against this host's.
OFFSET_REFRESH = 30.0


class PostgresStore(PgConnections, PgQuickClaimMixin, PgSchedulesMixin, PgFactsMixin,
                    PgCountsMixin, PgRunsMixin, PgViewsMixin, PgMaintenanceMixin, JobLists):
    """A litejobs store in a PostgreSQL database, named by a ``postgresql://`` URL (a
    ``options=-csearch_path%3DNAME`` parameter puts it in schema NAME). Cheap to make; the
    pool opens on first use, one per process."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4,
                 connect_timeout: float = 10.0) -> None:
        super().__init__(url, min_size=min_size, max_size=max_size,
                         connect_timeout=connect_timeout)
        # Queue rows known to exist (never deleted): inserts skip them.
        self._queues: set[str] = set()
        self._offset = 0.0
        self._offset_at = -OFFSET_REFRESH  # monotonic time it was measured

    #: Not a file of this host: no WAL to checkpoint, no file to watch or copy.
    local_file = False
    #: An insert's NOTIFY rides in its own statement, delivered at its commit: the App's ring
    #: after it would be a second round trip per enqueue.
    inserts_ring = True
    placeholder = "%s"  # of list_jobs

    # --- the bell and the clock ------------------------------------------------------------------

    def bell(self) -> PostgresStore:
        """Rings the supervisors listening to this store (``ring``: ``pg_notify``, one
        statement)."""
        return self

    def bell_listener(self, name: str) -> PgBellListener:
        """A supervisor's ear: ``LISTEN`` on this store's channel (``name`` is unused: every
        supervisor of the store hears every ring)."""
        return PgBellListener(self.url)

    def ring(self, message: bytes = b"e") -> None:
        """Wake every supervisor of this store (on any host) now."""
        self._statement(lambda conn: conn.execute(RING, (message.decode("ascii"),)))

    def clock_offset(self) -> float:
        """The server's clock minus this process's, in seconds: measured over one round trip
        (its middle taken as the server's instant), again every ``OFFSET_REFRESH`` seconds,
        so a host's clock step is followed within that. Times read back minus it are times
        of this host's clock."""
        mono = time.monotonic()
        if mono - self._offset_at >= OFFSET_REFRESH:
            before = time.time()
            rows = self._read("SELECT extract(epoch FROM clock_timestamp())::float8 AS t")
            after = time.time()
            self._offset = float(rows[0]["t"]) - (before + after) / 2
            self._offset_at = mono
        return self._offset

    # --- Producer --------------------------------------------------------------------------------

    def insert_jobs(self, jobs: Sequence[NewJob | NewJobs], now: float,
                    ) -> list[Mapping[str, Any]]:
        """Insert ``jobs`` in one transaction; returns each one's row, in order (a keyed
        job's live twin's row instead, when it has one)."""
        message = ring_for(jobs, now)
        return self.write(lambda tx: tx.insert_many(jobs, now, message))

    def insert_job(self, job: NewJob, now: float) -> Mapping[str, Any]:
        """``insert_jobs`` for one job. The common one (no key, no tags, a queue known to
        exist) is one statement in autocommit: twice the enqueues a second of a transaction."""
        message = ring_for([job], now)
        if (job.key is not None or job.tags is not None or job.flow_rate is not None
                or job.queue not in self._queues):
            row = self.write(lambda tx: tx.insert(job, now, message))
        else:
            row = self._statement(
                lambda conn: PgTx(conn, self._queues).insert(job, now, message))
        return row

    # --- Supervising -----------------------------------------------------------------------------

    def write(self, fn: Callable[[PgTx], T]) -> T:
        """Run ``fn`` in one transaction, run again whole after a deadlock or serialization
        failure."""
        seen: set[str] = set()

        def run(conn: psycopg.Connection[Any]) -> T:
            # A copy per attempt: only a committed transaction's queues are known to exist.
            seen.clear()
            seen.update(self._queues)
            return fn(PgTx(conn, seen))

        value = self._transaction(run)
        if len(seen) > len(self._queues):
            self._queues = seen
        return value

    def next_scheduled(self) -> float | None:
        rows = self._read("SELECT min(run_at) AS t FROM jobs WHERE state = 'scheduled'")
        value = rows[0]["t"]
        return None if value is None else float(value)

    def held_by(self, prefix: str) -> dict[int, int]:
        """``{job_id: attempt}`` of running jobs leased by ids starting with ``prefix``."""
        rows = self._read(sql.RUNNING_LEASES, (_like_prefix(prefix),))
        return {int(r["id"]): int(r["attempt"]) for r in rows}

    # --- Reads -----------------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Row | None:
        rows = self._read(sql.SELECT_JOB, (job_id,))
        return rows[0] if rows else None

    def attempts(self, job_id: int) -> list[Attempt]:
        """Every attempt of a job, oldest first; the running or successful one is read from
        the job row."""

        def read(conn: psycopg.Connection[Any]) -> tuple[list[Row], Row | None]:
            rows = conn.execute(sql.SELECT_ATTEMPTS, (job_id,)).fetchall()
            return rows, conn.execute(sql.SELECT_JOB, (job_id,)).fetchone()

        rows, job = self._transaction(read)  # one round of the pool, not one snapshot
        out = [Attempt(r["attempt"], r["outcome"], r["started_at"], r["finished_at"],
                       r["error"], r["traceback"], r["worker"]) for r in rows]
        if job is not None and job["state"] in ("running", "succeeded") and (
                not out or out[-1].attempt < job["attempt"]):
            out.append(Attempt(job["attempt"], job["state"], job["started_at"],
                               job["finished_at"], None, None, job["leased_by"]))
        return out

    def stats(self) -> dict[str, Any]:
        states = {s.value: 0 for s in State}
        queues: dict[str, dict[str, int]] = {
            name: {s.value: 0 for s in State} for name, _ in self.queue_list()}
        for row in self._read(sql.COUNT_BY_QUEUE_STATE):
            states[row["state"]] += int(row["n"])
            queues.setdefault(row["queue"], {s.value: 0 for s in State})[row["state"]] = int(
                row["n"])
        return {"states": states, "queues": queues}

    def supervisors(self) -> list[Row]:
        return self._read(SELECT_SUPERVISORS)

    def cron_entries(self) -> list[Row]:
        """Each cron entry's stored state, with the state of the last job it fired."""
        return self._read(SELECT_CRON_ENTRIES)

    def outcome_minutes(self, since: float) -> list[tuple[int, str, float]]:
        """(minute, outcome, count over every task) of each minute from ``since`` on."""
        rows = self._read(FIGURE_READS["outcome_minutes"], (int(since // 60),))
        return [(int(r["minute"]), str(r["kind"]), float(r["value"])) for r in rows]

    def metric_totals(self) -> list[tuple[str, str, str, float]]:
        """Every (name, label, kind, value) counted since the store was made."""
        return [(str(r["name"]), str(r["label"]), str(r["kind"]), float(r["value"]))
                for r in self._read(FIGURE_READS["metric_totals"])]

    def queue_list(self) -> list[tuple[str, bool]]:
        return [(str(r["name"]), bool(r["paused"])) for r in self._read(sql.SELECT_QUEUES)]

    # --- Admin -----------------------------------------------------------------------------------

    def cancel(self, job_id: int, reason: str, now: float) -> bool:
        """Cancel a pending or running job; False when it is already terminal or missing."""
        return self.cancel_many([job_id], reason, now) == 1

    def cancel_many(self, ids: Sequence[int], reason: str, now: float) -> int:
        """``cancel`` for many jobs in one short transaction; running ones keep an
        "interrupted" attempt."""
        id_list = [int(i) for i in ids]

        def cancel(conn: psycopg.Connection[Any]) -> int:
            conn.execute(sql.RECORD_CANCELLED_ATTEMPTS, (reason, id_list))
            cancelled = conn.execute(sql.CANCEL_JOBS, (reason, id_list)).rowcount
            if cancelled:
                PgTx(conn).figure_cancelled(id_list, now)  # /metrics, in this transaction
            return cancelled

        return self._transaction(cancel)

    # retry and retry_many: PgRunsMixin's (a workflow step's retry revives its steps)

    def purge(self, ids: Sequence[int]) -> int:
        """Delete terminal jobs (and their attempts and tags) by id; others are left alone."""
        id_list = [int(i) for i in ids]
        return self._transaction(lambda conn: conn.execute(sql.PURGE, (id_list,)).rowcount)

    def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue: every supervisor on the database obeys it."""
        self._transaction(lambda conn: conn.execute(sql.SET_PAUSED, (queue, paused)))
        self._queues.add(queue)


if TYPE_CHECKING:
    from litejobs.store import protocols as p

    def _implements(store: PostgresStore, tx: PgTx) -> tuple[
            p.Producer, p.Admin, p.ExplainFacts, p.ProducerTx, p.ClaimTx, p.OutcomeTx,
            p.LeaseTx, p.CronTx, p.UpkeepTx, p.Bells, p.Reads, p.Workflows, p.Maintenance,
            p.WorkflowTx]:
        """mypy checks here the protocols the store implements whole so far."""
        return (store, store, store, tx, tx, tx, tx, tx, tx, store, store, store, store, tx)
