"""The PostgreSQL store's cron statements (``CronTx``): each fire a unique (entry, instant)
row written in the transaction of its job, so an instant makes one job however many
supervisors, on however many hosts, fire it at once.

Instants and an entry's ``since`` are stored as given: they name calendar instants of the
entry's schedule (the row's identity across hosts), not times measured from the caller's
``now``. Which instants are due is the ticker's decision; on PostgreSQL it must make it on the
server's clock (not wired yet). ``fired_at`` is the server's clock.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from litejobs.newjob import NewJob
from litejobs.store.postgres import sql
from litejobs.store.rows import Row

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgCronMixin"]


class PgCronMixin:
    """``PgTx``'s cron statements (the ``CronTx`` protocol)."""

    conn: psycopg.Connection[Any]

    if TYPE_CHECKING:
        def insert(self, job: NewJob, now: float) -> Any: ...  # (PgInsertsMixin)

    def cron_entry(self, name: str) -> Row | None:
        row: Row | None = self.conn.execute(sql.SELECT_CRON_ENTRY, (name,)).fetchone()
        return row

    def cron_reset(self, name: str, schedule: str, since: float) -> None:
        """Start (or restart, after its schedule changed) an entry's history at ``since``."""
        self.conn.execute(sql.UPSERT_CRON_ENTRY, (name, schedule, since))

    def cron_fire(self, entry: str, instant: float, job: NewJob | None, outcome: str,
                  now: float) -> int | None:
        """Mark ``instant`` of ``entry`` handled; with a job, insert it in this transaction.

        Returns the new job's id, or None when the instant was already handled (by another
        supervisor, or before a restart) or is recorded as skipped. A concurrent fire of the
        same instant waits for this transaction's end and then finds the row.
        """
        if self.conn.execute(sql.INSERT_CRON_FIRE, (entry, instant, outcome)).rowcount != 1:
            return None
        if job is None:
            return None
        job_id = int(self.insert(job, now)["id"])
        self.conn.execute(sql.SET_CRON_FIRE_JOB, (job_id, entry, instant))
        return job_id

    def cron_advance(self, name: str, instant: float, job_id: int | None) -> None:
        self.conn.execute(sql.ADVANCE_CRON_ENTRY, (instant, job_id, name))

    def job_state(self, job_id: int) -> str | None:
        row = self.conn.execute(sql.SELECT_JOB_STATE, (job_id,)).fetchone()
        return None if row is None else str(row["state"])

    def prune_cron_fires(self, before: float, limit: int = 500) -> int:
        """Delete up to ``limit`` fires made ``time.time() - before`` seconds or more ago (on
        the server's clock; the protocol passes no ``now``)."""
        return self.conn.execute(sql.PRUNE_CRON_FIRES,
                                 (float(time.time() - before), limit)).rowcount
