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
from litejobs.store.postgres.sql import NOW
from litejobs.store.rows import Row

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgCronMixin"]

SELECT_CRON_ENTRY = (
    "SELECT name, schedule, since, last_instant, last_job FROM cron_entries WHERE name = %s"
)
UPSERT_CRON_ENTRY = """
INSERT INTO cron_entries (name, schedule, since) VALUES (%s, %s, %s)
ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, since = excluded.since
"""
ADVANCE_CRON_ENTRY = """
UPDATE cron_entries SET last_instant = greatest(coalesce(last_instant, 0), %s),
                        last_job = coalesce(%s, last_job)
WHERE name = %s
"""
# The exactly-once row: a second fire of the instant (another supervisor's, any host) finds
# it and makes nothing; one racing this transaction waits for it to end, then finds it.
INSERT_CRON_FIRE = f"""
INSERT INTO cron_fires (entry, instant, outcome, fired_at) VALUES (%s, %s, %s, {NOW})
ON CONFLICT (entry, instant) DO NOTHING
"""
SET_CRON_FIRE_JOB = "UPDATE cron_fires SET job_id = %s WHERE entry = %s AND instant = %s"
# The insert stores a run time as its distance from the caller's `now` on the server's clock;
# a fire's job is scheduled for the instant itself (`current_job().scheduled_at`), as named.
SET_FIRED_JOB_INSTANT = "UPDATE jobs SET scheduled_at = %s WHERE id = %s"
SELECT_JOB_STATE = "SELECT state FROM jobs WHERE id = %s"
PRUNE_CRON_FIRES = f"""
DELETE FROM cron_fires WHERE (entry, instant) IN (
    SELECT entry, instant FROM cron_fires WHERE fired_at < {NOW} - %s LIMIT %s)
"""


class PgCronMixin:
    """``PgTx``'s cron statements (the ``CronTx`` protocol)."""

    conn: psycopg.Connection[Any]

    if TYPE_CHECKING:
        def insert(self, job: NewJob, now: float) -> Any: ...  # (PgInsertsMixin)

    def cron_entry(self, name: str) -> Row | None:
        row: Row | None = self.conn.execute(SELECT_CRON_ENTRY, (name,)).fetchone()
        return row

    def cron_reset(self, name: str, schedule: str, since: float) -> None:
        """Start (or restart, after its schedule changed) an entry's history at ``since``."""
        self.conn.execute(UPSERT_CRON_ENTRY, (name, schedule, since))

    def cron_fire(self, entry: str, instant: float, job: NewJob | None, outcome: str,
                  now: float) -> int | None:
        """Mark ``instant`` of ``entry`` handled; with a job, insert it in this transaction.

        Returns the new job's id, or None when the instant was already handled (by another
        supervisor, or before a restart) or is recorded as skipped. A concurrent fire of the
        same instant waits for this transaction's end and then finds the row.
        """
        if self.conn.execute(INSERT_CRON_FIRE, (entry, instant, outcome)).rowcount != 1:
            return None
        if job is None:
            return None
        job_id = int(self.insert(job, now)["id"])
        self.conn.execute(SET_FIRED_JOB_INSTANT, (instant, job_id))
        self.conn.execute(SET_CRON_FIRE_JOB, (job_id, entry, instant))
        return job_id

    def cron_advance(self, name: str, instant: float, job_id: int | None) -> None:
        self.conn.execute(ADVANCE_CRON_ENTRY, (instant, job_id, name))

    def job_state(self, job_id: int) -> str | None:
        row = self.conn.execute(SELECT_JOB_STATE, (job_id,)).fetchone()
        return None if row is None else str(row["state"])

    def prune_cron_fires(self, before: float, limit: int = 500) -> int:
        """Delete up to ``limit`` fires made ``time.time() - before`` seconds or more ago (on
        the server's clock; the protocol passes no ``now``)."""
        return self.conn.execute(PRUNE_CRON_FIRES,
                                 (float(time.time() - before), limit)).rowcount
