"""The PostgreSQL store's upkeep in a supervisor's transaction: pruning old jobs, the
supervisors' heartbeat rows (part of ``UpkeepTx``; the /metrics figures are not here yet).

``before`` arguments are the caller's clock with no ``now`` beside them: they are taken as a
distance back from this process's ``time.time()``, and compared on the server's clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from litejobs.store.postgres.sql import NOW
from litejobs.store.rows import Row
from litejobs.store.tx import pid_namespace

if TYPE_CHECKING:
    import psycopg

__all__ = ["SELECT_CRON_ENTRIES", "SELECT_SUPERVISORS", "PgUpkeepMixin"]

# (seconds ago, limit): as the SQLite store's PRUNE, on the server's clock.
PRUNE = f"""
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')
      AND finished_at < {NOW} - %s
      AND (workflow IS NULL OR (NOT EXISTS (
          SELECT 1 FROM job_deps d JOIN jobs w ON w.id = d.job_id
          WHERE d.upstream = jobs.id AND w.state NOT IN ('succeeded', 'failed', 'cancelled'))
        AND (continuation IS NULL OR NOT EXISTS (
          SELECT 1 FROM jobs r WHERE r.workflow = jobs.workflow
          AND r.state NOT IN ('succeeded', 'failed', 'cancelled')))))
    ORDER BY finished_at LIMIT %s)
"""
# (id, hostname, pid, started ago, queues, pid_ns)
UPSERT_SUPERVISOR = f"""
INSERT INTO supervisors (id, hostname, pid, started_at, heartbeat_at, queues, pid_ns)
VALUES (%s, %s, %s, {NOW} - %s, {NOW}, %s, %s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, pid_ns = excluded.pid_ns
"""
DELETE_SUPERVISOR = "DELETE FROM supervisors WHERE id = %s"
DELETE_OLD_SUPERVISORS = f"DELETE FROM supervisors WHERE heartbeat_at < {NOW} - %s"
SET_WORKERS = "UPDATE supervisors SET workers = %s WHERE id = %s"
SELECT_SUPERVISORS = (
    "SELECT id, hostname, pid, started_at, heartbeat_at, queues, pid_ns FROM supervisors "
    "ORDER BY id"
)
SELECT_CRON_ENTRIES = """
SELECT e.name, e.schedule, e.since, e.last_instant, e.last_job, j.state AS last_state
FROM cron_entries e LEFT JOIN jobs j ON j.id = e.last_job
ORDER BY e.name
"""


def _ago(before: float) -> float:
    return float(time.time() - before)


class PgUpkeepMixin:
    """``PgTx``'s pruning and heartbeat statements."""

    conn: psycopg.Connection[Any]

    def prune(self, before: float, limit: int = 500) -> int:
        """Delete up to ``limit`` jobs that ended before ``before`` (a workflow step while a
        step waiting on it has not ended is kept, as in the SQLite store)."""
        return self.conn.execute(PRUNE, (_ago(before), limit)).rowcount

    def heartbeat(self, supervisor: str, hostname: str, pid: int, started: float, now: float,
                  queues: str) -> None:
        """Record that ``supervisor`` (this process: its PID namespace is read here) lives;
        its heartbeat and start on the server's clock."""
        self.conn.execute(UPSERT_SUPERVISOR, (
            supervisor, hostname, pid, float(now - started), queues, pid_namespace()))

    def forget_supervisor(self, supervisor: str) -> None:
        self.conn.execute(DELETE_SUPERVISOR, (supervisor,))

    def forget_supervisors_before(self, before: float) -> None:
        self.conn.execute(DELETE_OLD_SUPERVISORS, (_ago(before),))

    def set_workers(self, supervisor: str, workers: Sequence[Row]) -> None:
        """Write ``supervisor``'s workers (see ``litejobs.services.heartbeat``) on its row."""
        self.conn.execute(SET_WORKERS, (json.dumps(list(workers)), supervisor))
