"""What operators look at: the per-minute figures the supervisors add up, job counts, the age
of the oldest ready job, each supervisor's workers, and the facts ``litejobs health`` reads.

Writes (``MetricsTxMixin``, for ``Tx``) add figures in the caller's transaction: the supervisor's
batched one (``litejobs.figures`` adds them up in memory first), a cron tick's, a cancel's.
``metric_minutes`` keeps each minute's figures for the charts (pruned after two days);
``metric_totals`` the sums of every minute ever counted, the Prometheus counters, which must
never go down and so are never pruned.

The reads (``StoreMetrics``, for ``Store``) are in ``metric_reads``: that module imports the
connections, which import ``Tx``, which takes its mixin from here. Their statements are here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import apsw

from litejobs.store.rows import Row, _id_list

__all__ = ["FigureRow", "MetricsTxMixin"]

#: One figure: (minute = unix time // 60, name, label, kind, value).
FigureRow = tuple[int, str, str, str, float]

# --- writes -----------------------------------------------------------------------------------

ADD_MINUTE = """
INSERT INTO metric_minutes (minute, name, label, kind, value) VALUES (?, ?, ?, ?, ?)
ON CONFLICT DO UPDATE SET value = value + excluded.value
"""
ADD_TOTAL = """
INSERT INTO metric_totals (name, label, kind, value) VALUES (?, ?, ?, ?)
ON CONFLICT DO UPDATE SET value = value + excluded.value
"""
# Jobs this transaction ended cancelled: their finished_at is its `now` (to the bit). The state
# is named twice so that the planner sees the partial index jobs_finished's own condition.
_ENDED_CANCELLED = """
SELECT task, count(*) FROM jobs
WHERE state IN ('succeeded', 'failed', 'cancelled') AND state = 'cancelled' AND finished_at = ?
"""
EXPIRED_NOW = _ENDED_CANCELLED + " AND error LIKE 'expired:%' GROUP BY task"
CANCELLED_NOW = (_ENDED_CANCELLED
                 + " AND id IN (SELECT value FROM json_each(?)) GROUP BY task")
# Fires of one entry this tick wrote (fired_at is the tick's `now`), through the primary key.
CRON_FIRED_NOW = """
SELECT outcome, count(*) FROM cron_fires
WHERE entry = ? AND instant BETWEEN ? AND ? AND fired_at = ? GROUP BY outcome
"""
PRUNE_METRIC_MINUTES = """
DELETE FROM metric_minutes WHERE (minute, name, label, kind) IN (
    SELECT minute, name, label, kind FROM metric_minutes WHERE minute < ? LIMIT ?)
"""
SET_WORKERS = "UPDATE supervisors SET workers = ? WHERE id = ?"

# --- reads ------------------------------------------------------------------------------------

OUTCOME_MINUTES = """
SELECT minute, kind, sum(value) FROM metric_minutes
WHERE minute >= ? AND name = 'outcome' GROUP BY minute, kind ORDER BY minute, kind
"""
METRIC_TOTALS = "SELECT name, label, kind, value FROM metric_totals ORDER BY name, label, kind"
# Each live state through its own partial index (waiting: every waiting job is a workflow's).
LIVE_COUNTS = """
SELECT queue, 'queued', count(*) FROM jobs WHERE state = 'queued' GROUP BY queue
UNION ALL
SELECT queue, 'running', count(*) FROM jobs WHERE state = 'running' GROUP BY queue
UNION ALL
SELECT queue, 'scheduled', count(*) FROM jobs WHERE state = 'scheduled' GROUP BY queue
UNION ALL
SELECT queue, 'waiting', count(*) FROM jobs
WHERE workflow IS NOT NULL AND state = 'waiting' GROUP BY queue
"""
TERMINAL_COUNTS = """
SELECT queue, state, count(*) FROM jobs
WHERE state IN ('succeeded', 'failed', 'cancelled') GROUP BY queue, state
"""
# Queued jobs are due (a job not yet due is scheduled); the oldest run_at of each queue.
OLDEST_READY = "SELECT queue, min(run_at) FROM jobs WHERE state = 'queued' GROUP BY queue"
# Every worker of every supervisor, as its last heartbeat wrote it.
WORKERS = """
SELECT s.id AS supervisor, s.hostname, s.heartbeat_at, w.value ->> 'name' AS name,
       w.value ->> 'pid' AS pid, w.value ->> 'state' AS state, w.value ->> 'job' AS job,
       w.value ->> 'task' AS task, w.value ->> 'started_at' AS started_at,
       w.value ->> 'rss' AS rss, w.value ->> 'jobs_done' AS jobs_done
FROM supervisors AS s, json_each(coalesce(s.workers, '[]')) AS w
ORDER BY s.id, w.key
"""
LIVE_SUPERVISORS = "SELECT count(*) FROM supervisors WHERE heartbeat_at >= ?"
NEWEST_HEARTBEAT = "SELECT max(heartbeat_at) FROM supervisors"
LONG_EXPIRED_LEASES = "SELECT count(*) FROM jobs WHERE state = 'running' AND lease_until < ?"


class MetricsTxMixin:
    """The figures' statements of a write transaction (``Tx``)."""

    cursor: apsw.Cursor

    def add_figures(self, rows: Sequence[FigureRow]) -> None:
        """Add ``rows`` to their minutes and to the totals."""
        if not rows:
            return
        totals: dict[tuple[str, str, str], float] = {}
        for _, name, label, kind, value in rows:
            key = (name, label, kind)
            totals[key] = totals.get(key, 0.0) + value
        self.cursor.executemany(ADD_MINUTE, rows)
        self.cursor.executemany(ADD_TOTAL, [(*k, v) for k, v in totals.items()])

    def figure_expired(self, now: float) -> None:
        """Count the jobs ``expire_due(now)`` cancelled in this transaction, per task."""
        self._outcome_counts("expired", now, self.cursor.execute(EXPIRED_NOW, (now,)))

    def figure_cancelled(self, ids: Sequence[int], now: float) -> None:
        """Count the jobs of ``ids`` a cancel at ``now`` cancelled in this transaction."""
        self._outcome_counts("cancelled", now,
                             self.cursor.execute(CANCELLED_NOW, (now, _id_list(ids))))

    def figure_cron(self, entry: str, first: float, last: float, now: float) -> None:
        """Count the fires of ``entry`` (instants ``first`` to ``last``) this tick wrote."""
        minute = int(now // 60)
        rows = [(minute, "cron", entry, str(outcome), float(n)) for outcome, n in
                self.cursor.execute(CRON_FIRED_NOW, (entry, first, last, now))]
        self.add_figures(rows)

    def prune_metric_minutes(self, before: float, limit: int = 500) -> int:
        """Delete up to ``limit`` per-minute figures older than ``before`` (the totals stay)."""
        self.cursor.execute(PRUNE_METRIC_MINUTES, (int(before // 60), limit))
        return int(self.cursor.connection.changes())

    def set_workers(self, supervisor: str, workers: Sequence[Row]) -> None:
        """Write ``supervisor``'s workers (see ``litejobs.services.heartbeat``) on its row."""
        self.cursor.execute(SET_WORKERS, (json.dumps(list(workers)), supervisor))

    def _outcome_counts(self, kind: str, now: float, cursor: apsw.Cursor) -> None:
        minute = int(now // 60)
        self.add_figures([(minute, "outcome", str(task), kind, float(n)) for task, n in cursor])
