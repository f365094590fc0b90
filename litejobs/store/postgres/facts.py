"""What ``litejobs explain`` reads to say why a job has not run (``ExplainFacts``), from the
PostgreSQL store. Nothing here writes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from litejobs.store.postgres.sql import NOW
from litejobs.store.rows import Row

__all__ = ["PgFactsMixin"]

SELECT_PAUSED = "SELECT paused FROM queues WHERE name = %s"
COUNT_RUNNING_IN_QUEUE = (
    "SELECT count(*) AS n FROM jobs WHERE state = 'running' AND queue = %s")
RUNNING_IN_QUEUE = (
    "SELECT id FROM jobs WHERE state = 'running' AND queue = %s ORDER BY started_at LIMIT %s")
RUNNING_WITH_KEY = (
    "SELECT id FROM jobs WHERE state = 'running' AND concurrency_key = %s ORDER BY started_at")
# (queue, seconds ago): the starts counted, and the oldest of known time (a start not yet
# known, of a job sent ahead, is +infinity: counted, never the oldest), as the SQLite store's.
RATE_WINDOW = f"""
SELECT count(*) AS n, min(at) FILTER (WHERE job_id IS NULL) AS oldest FROM rate_starts
WHERE queue = %s AND at > {NOW} - %s
"""
FLOW_WINDOW = f"""
SELECT count(*) AS n, min(until) FILTER (WHERE job_id IS NULL) AS first FROM flow_starts
WHERE key = %s AND until > {NOW}
"""
AHEAD_IN_QUEUE = """
SELECT count(*) AS n FROM jobs
WHERE state = 'queued' AND queue = %(queue)s
  AND (priority > %(priority)s OR (priority = %(priority)s AND (run_at < %(run_at)s
       OR (run_at = %(run_at)s AND id < %(id)s))))
"""


class PgFactsMixin:
    """The explain facts of PostgresStore."""

    if TYPE_CHECKING:
        def _read(self, statement: str, params: Any = ()) -> list[Row]: ...

    def queue_paused(self, queue: str) -> bool:
        rows = self._read(SELECT_PAUSED, (queue,))
        return bool(rows and rows[0]["paused"])

    def running_in_queue(self, queue: str, limit: int = 5) -> tuple[int, list[int]]:
        count = int(self._read(COUNT_RUNNING_IN_QUEUE, (queue,))[0]["n"])
        return count, [int(r["id"]) for r in self._read(RUNNING_IN_QUEUE, (queue, limit))]

    def running_with_key(self, key: str) -> list[int]:
        return [int(r["id"]) for r in self._read(RUNNING_WITH_KEY, (key,))]

    def rate_window(self, queue: str, since: float) -> tuple[int, float | None]:
        """Starts of ``queue`` after ``since`` (this process's clock, taken as a distance
        back from its ``time.time()``), and the oldest of them (the server's clock)."""
        row = self._read(RATE_WINDOW, (queue, float(time.time() - since)))[0]
        return int(row["n"]), row["oldest"]

    def flow_window(self, key: str, now: float) -> tuple[int, float | None]:
        """Starts of flow key ``key`` its rate window still counts (on the server's clock:
        ``now`` is not read), and when the first of them stops counting."""
        row = self._read(FLOW_WINDOW, (key,))[0]
        return int(row["n"]), row["first"]

    def ahead_of(self, job: Row) -> int:
        """How many queued jobs of the job's queue a claim takes before it."""
        rows = self._read(AHEAD_IN_QUEUE, {"queue": job["queue"], "priority": job["priority"],
                                           "run_at": job["run_at"], "id": job["id"]})
        return int(rows[0]["n"])
