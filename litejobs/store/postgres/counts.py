"""The PostgreSQL store's counting reads: jobs matching a bulk operation's filters (paged by
id), job counts per queue and state, how long each queue's oldest ready job has waited, and
the supervisors' workers. Nothing here writes.

Unlike the SQLite store's, the counts are not cached yet: each call asks the server.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from litejobs.store.postgres.sql import NOW
from litejobs.store.rows import Row

__all__ = ["PgCountsMixin"]

JOB_COUNTS = "SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state"
# Queued jobs are due; how long each queue's oldest has been, on the server's clock.
OLDEST_READY = f"""
SELECT queue, greatest(0, {NOW} - min(run_at)) AS waited FROM jobs WHERE state = 'queued'
GROUP BY queue
"""
# Typed as SQLite's ->> gives them (numbers as numbers), so callers read both stores alike.
WORKERS = """
SELECT s.id AS supervisor, s.hostname, s.heartbeat_at, w.value ->> 'name' AS name,
       (w.value ->> 'pid')::bigint AS pid, w.value ->> 'state' AS state,
       (w.value ->> 'job')::bigint AS job, w.value ->> 'task' AS task,
       (w.value ->> 'started_at')::float8 AS started_at, (w.value ->> 'rss')::bigint AS rss,
       (w.value ->> 'jobs_done')::bigint AS jobs_done
FROM supervisors AS s,
     json_array_elements(coalesce(s.workers, '[]')::json) WITH ORDINALITY AS w (value, n)
ORDER BY s.id, w.n
"""


def _filters(states: Sequence[str], task: str | None, queue: str | None,
             since: float | None) -> tuple[str, list[Any]]:
    clauses = ["state = ANY(%s)"]
    params: list[Any] = [list(states)]
    for column, value in (("task", task), ("queue", queue)):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if since is not None:  # this process's clock, as a distance back from its now
        clauses.append(f"created_at >= {NOW} - %s")
        params.append(float(time.time() - since))
    return " AND ".join(clauses), params


class PgCountsMixin:
    """The counting reads of PostgresStore."""

    if TYPE_CHECKING:
        def _read(self, statement: str, params: Any = ()) -> list[Row]: ...

    def count_matching(self, states: Sequence[str], task: str | None = None,
                       queue: str | None = None, since: float | None = None) -> int:
        where, params = _filters(states, task, queue, since)
        return int(self._read(f"SELECT count(*) AS n FROM jobs WHERE {where}", params)[0]["n"])

    def ids_matching(self, states: Sequence[str], task: str | None = None,
                     queue: str | None = None, since: float | None = None,
                     after_id: int = 0, limit: int = 1000) -> list[int]:
        """One page of matching ids above ``after_id``, for bulk operations in batches."""
        where, params = _filters(states, task, queue, since)
        rows = self._read(f"SELECT id FROM jobs WHERE {where} AND id > %s ORDER BY id LIMIT %s",
                          [*params, after_id, limit])
        return [int(r["id"]) for r in rows]

    def job_counts(self) -> dict[tuple[str, str], int]:
        """``{(queue, state): count}`` of every state with a job."""
        return {(str(r["queue"]), str(r["state"])): int(r["n"]) for r in self._read(JOB_COUNTS)}

    def oldest_ready(self, now: float | None = None) -> dict[str, float]:
        """``{queue: seconds}``: how long the oldest ready job of each queue has been due, on
        the server's clock (``now`` is not read)."""
        return {str(r["queue"]): float(r["waited"]) for r in self._read(OLDEST_READY)}

    def workers(self) -> list[Row]:
        """Every worker of every supervisor row, as its last heartbeat wrote it, with the
        supervisor's ``supervisor`` id, ``hostname`` and ``heartbeat_at``."""
        return self._read(WORKERS)
