"""Reading the file: jobs, attempts, counts, queues, supervisors, cron entries, and the facts
``explain`` gives. Nothing here writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litejobs.job import Attempt, State
from litejobs.store import sql
from litejobs.store.connections import Connections
from litejobs.store.filters import JobLists
from litejobs.store.flowkeys import FLOW_WINDOW
from litejobs.store.rows import Row, _like_prefix

__all__ = ["StoreReads"]


class StoreReads(JobLists, Connections):
    """The read operations of Store (see protocols.Reads and protocols.ExplainFacts)."""

    placeholder = "?"

    def get_job(self, job_id: int) -> Row | None:
        rows = self._read(sql.SELECT_JOB, (job_id,))
        return rows[0] if rows else None

    def attempts(self, job_id: int) -> list[Attempt]:
        """Every attempt of a job, oldest first; the running or successful one is read from
        the job row."""
        rows = self._read(sql.SELECT_ATTEMPTS, (job_id,))
        out = [Attempt(r["attempt"], r["outcome"], r["started_at"], r["finished_at"], r["error"],
                       r["traceback"], r["worker"]) for r in rows]
        job = self.get_job(job_id)
        last = job["state"] if job is not None else None
        if job is not None and last in ("running", "succeeded") and (
                not out or out[-1].attempt < job["attempt"]):
            out.append(Attempt(job["attempt"], last, job["started_at"], job["finished_at"],
                               None, None, job["leased_by"]))
        return out


    def next_scheduled(self) -> float | None:
        value = next(iter(self._read(sql.NEXT_SCHEDULED)[0].values()))
        return None if value is None else float(value)

    def held_by(self, prefix: str) -> dict[int, int]:
        """``{job_id: attempt}`` of running jobs leased by ids starting with ``prefix``."""
        # _read: the supervisor's loop survives only StorageError, never a raw apsw error
        rows = self._read(sql.HELD_BY, (_like_prefix(prefix),))
        return {int(r["id"]): int(r["attempt"]) for r in rows}

    def supervisors(self) -> list[Row]:
        return self._read(sql.SELECT_SUPERVISORS)

    def cron_entries(self) -> list[Row]:
        """Each cron entry's stored state, with the state of the last job it fired."""
        return self._read(sql.SELECT_CRON_ENTRIES)

    def stats(self) -> dict[str, Any]:
        states = {s.value: 0 for s in State}
        queues: dict[str, dict[str, int]] = {}
        for name, _ in self.queue_list():
            queues[name] = {s.value: 0 for s in State}
        # _read: a corrupt or locked file surfaces as StorageError, not a raw apsw error
        for row in self._read(sql.COUNT_BY_QUEUE_STATE):
            queue, state, count = row.values()
            states[state] += count
            queues.setdefault(queue, {s.value: 0 for s in State})[state] = count
        return {"states": states, "queues": queues}


    # --- matching jobs, for bulk operations ---------------------------------------------------

    @staticmethod
    def _filters(states: Sequence[str], task: str | None, queue: str | None,
                 since: float | None) -> tuple[str, list[Any]]:
        clauses = [f"state IN ({', '.join('?' for _ in states)})"]
        params: list[Any] = list(states)
        for column, value in (("task", task), ("queue", queue)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(since)
        return " AND ".join(clauses), params

    def count_matching(self, states: Sequence[str], task: str | None = None,
                       queue: str | None = None, since: float | None = None) -> int:
        where, params = self._filters(states, task, queue, since)
        return int(self._read(f"SELECT count(*) AS n FROM jobs WHERE {where}", params)[0]["n"])

    def ids_matching(self, states: Sequence[str], task: str | None = None,
                     queue: str | None = None, since: float | None = None,
                     after_id: int = 0, limit: int = 1000) -> list[int]:
        """One page of matching ids above ``after_id``, for bulk operations in batches."""
        where, params = self._filters(states, task, queue, since)
        rows = self._read(f"SELECT id FROM jobs WHERE {where} AND id > ? ORDER BY id LIMIT ?",
                          [*params, after_id, limit])
        return [int(r["id"]) for r in rows]


    # --- facts for `explain` ------------------------------------------------------------------

    def queue_paused(self, queue: str) -> bool:
        rows = self._read(sql.SELECT_PAUSED, (queue,))
        return bool(rows and rows[0]["paused"])

    def running_in_queue(self, queue: str, limit: int = 5) -> tuple[int, list[int]]:
        count = int(next(iter(self._read(sql.COUNT_RUNNING_IN_QUEUE, (queue,))[0].values())))
        ids = [int(r["id"]) for r in self._read(sql.RUNNING_IN_QUEUE, (queue, limit))]
        return count, ids

    def running_with_key(self, key: str) -> list[int]:
        return [int(r["id"]) for r in self._read(sql.RUNNING_WITH_KEY, (key,))]

    def rate_window(self, queue: str, since: float) -> tuple[int, float | None]:
        row = self._read(sql.RATE_WINDOW, (queue, since))[0]
        values = list(row.values())
        return int(values[0]), values[1]

    def flow_window(self, key: str, now: float) -> tuple[int, float | None]:
        """Starts of flow key ``key`` its rate window still counts at ``now``, and when the
        first of them stops counting (None when there is none)."""
        count, first = self._read(FLOW_WINDOW, (key, now))[0].values()
        return int(count), first

    def ahead_of(self, job: Row) -> int:
        """How many queued jobs of the job's queue a claim takes before it."""
        rows = self._read(sql.AHEAD_IN_QUEUE, {"queue": job["queue"], "priority": job["priority"],
                                           "run_at": job["run_at"], "id": job["id"]})
        return int(next(iter(rows[0].values())))

    def queue_list(self) -> list[tuple[str, bool]]:
        return [(str(r["name"]), bool(r["paused"])) for r in self._read(sql.SELECT_QUEUES)]
