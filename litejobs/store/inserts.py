"""A write transaction's inserts: one job, many (one statement per run of keyless jobs or per
``NewJobs``), and a keyed job's live twin. ``Tx`` (``litejobs.store.tx``) takes them from
``InsertsMixin``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import apsw

from litejobs.job import State
from litejobs.newjob import NewJob, NewJobs
from litejobs.serialization import encode
from litejobs.store import sql
from litejobs.store.rows import Row, _dicts, _scalar

__all__ = ["InsertsMixin", "NewRow"]


def _params(job: NewJob, state: str, now: float) -> tuple[Any, ...]:
    return (job.task, job.queue, state, job.priority, job.args, job.kwargs, job.key, job.run_at,
            job.run_at, now, job.max_attempts, job.timeout, job.expires_at, job.concurrency_key,
            job.concurrency_limit)


class NewRow(Mapping[str, Any]):
    """The row of a job this process just inserted, without reading it back. Built on first
    use: a bulk insert hands out thousands that nobody may look at."""

    __slots__ = ("_args", "_id", "_job", "_kwargs", "_now", "_row", "_state")

    def __init__(self, job: NewJob, job_id: int, state: str, now: float,
                 args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                 ) -> None:
        self._job = job
        self._id = job_id
        self._state = state
        self._now = now
        self._args = args  # for a NewJobs member: its own arguments, encoded when asked
        self._kwargs = kwargs
        self._row: Row | None = None

    def _full(self) -> Row:
        if self._row is None:
            job = self._job
            if self._args is None:
                args, kwargs = job.args, job.kwargs
            else:
                args = encode(list(self._args))
                kwargs = encode(dict(self._kwargs)) if self._kwargs else "{}"
            self._row = {
                "id": self._id, "task": job.task, "queue": job.queue, "state": self._state,
                "priority": job.priority, "args": args, "kwargs": kwargs,
                "key": job.key, "run_at": job.run_at, "scheduled_at": job.run_at,
                "created_at": self._now, "attempt": 0, "max_attempts": job.max_attempts,
                "interrupts": 0, "crashes": 0, "timeout": job.timeout,
                "expires_at": job.expires_at, "concurrency_key": job.concurrency_key,
                "concurrency_limit": job.concurrency_limit, "leased_by": None,
                "lease_until": None, "started_at": None, "finished_at": None, "result": None,
                "error": None, "tags": job.tags, "progress": None, "progress_message": None,
                "metadata": None, "workflow": None, "continuation": None,
                "flow_rate": job.flow_rate, "flow_period": job.flow_period,
            }
        return self._row

    def __getitem__(self, key: str) -> Any:
        if key == "id":
            return self._id
        return self._full()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())


class InsertsMixin:
    """``Tx``'s inserts (the ``ProducerTx`` protocol)."""

    cursor: apsw.Cursor
    _queues_seen: set[str]

    def insert(self, job: NewJob, now: float) -> Mapping[str, Any]:
        """Insert one job (or return its live twin of the same task and key)."""
        cur = self.cursor
        if job.key is not None:
            twin = self._twin(job, now)
            if twin is not None:
                return twin
        if job.queue not in self._queues_seen:
            self._know_queues((job.queue,))
        state = State.SCHEDULED.value if job.run_at > now else State.QUEUED.value
        if job.tags is None and job.trace is None and job.flow_rate is None:
            cur.execute(sql.INSERT_JOBS, _params(job, state, now))
            return NewRow(job, cur.connection.last_insert_rowid(), state, now)
        cur.execute(sql.INSERT_TAGGED_JOB, (*_params(job, state, now), job.tags, job.trace,
                                            job.flow_rate, job.flow_period))
        job_id = cur.connection.last_insert_rowid()
        if job.tags is not None:
            cur.execute(sql.INSERT_JOB_TAGS, (job_id, job.tags))
        return NewRow(job, job_id, state, now)

    def insert_many(self, jobs: Sequence[NewJob | NewJobs], now: float,
                    ) -> list[Mapping[str, Any]]:
        """Insert ``jobs`` in order: keyed, tagged, traced and rated ones one by one (a twin;
        tag rows), runs of the others with one ``executemany``, each ``NewJobs`` with one
        statement."""
        out: list[Mapping[str, Any]] = []
        plain: list[NewJob] = []
        for job in jobs:
            if (isinstance(job, NewJob) and job.key is None and job.tags is None
                    and job.trace is None and job.flow_rate is None):
                plain.append(job)
                continue
            out.extend(self._insert_plain(plain, now))
            plain = []
            if isinstance(job, NewJobs):
                out.extend(self._insert_batch(job, now))
            else:
                out.append(self.insert(job, now))
        out.extend(self._insert_plain(plain, now))
        return out

    def _know_queues(self, queues: Iterable[str]) -> None:
        for queue in set(queues) - self._queues_seen:
            # Queue rows are never deleted, so once one is known to exist this process skips
            # the statement (the set is shared by this Store's transactions).
            self.cursor.execute(sql.INSERT_QUEUE, (queue,))
            self._queues_seen.add(queue)

    def _new_ids(self, top: int, count: int) -> Iterable[int]:
        """The ids of the ``count`` rows just inserted above id ``top``."""
        last = self.cursor.connection.last_insert_rowid()
        # This transaction holds the write lock, so its rows take top+1, +2, … (see
        # sql.INSERT_JOBS); should they ever have other ids, read them back instead.
        if last - top == count:
            return range(top + 1, last + 1)
        return [int(r[0]) for r in self.cursor.execute(sql.IDS_ABOVE, (top,))]

    def _insert_plain(self, jobs: Sequence[NewJob], now: float) -> list[Mapping[str, Any]]:
        if len(jobs) < 2:
            return [self.insert(job, now) for job in jobs]
        cur = self.cursor
        self._know_queues(job.queue for job in jobs)
        states = [State.SCHEDULED.value if job.run_at > now else State.QUEUED.value
                  for job in jobs]
        top = int(_scalar(cur, sql.TOP_JOB_ID))
        cur.executemany(sql.INSERT_JOBS,
                        [_params(job, state, now) for job, state in zip(jobs, states,
                                                                         strict=True)])
        ids = self._new_ids(top, len(jobs))
        return [NewRow(job, job_id, state, now)
                for job, job_id, state in zip(jobs, ids, states, strict=True)]

    def _insert_batch(self, batch: NewJobs, now: float) -> list[Mapping[str, Any]]:
        job = batch.template
        self._know_queues((job.queue,))
        state = State.SCHEDULED.value if job.run_at > now else State.QUEUED.value
        top = int(_scalar(self.cursor, sql.TOP_JOB_ID))
        statement = sql.INSERT_JOBS_JSON if batch.kwargs is None else sql.INSERT_JOBS_JSON_KW
        self.cursor.execute(statement, (
            job.task, job.queue, state, job.priority, job.run_at, now, job.max_attempts,
            job.timeout, job.expires_at, job.concurrency_key, job.concurrency_limit,
            batch.payload, top, job.flow_rate, job.flow_period))
        ids = self._new_ids(top, len(batch))
        if batch.kwargs is None:
            return [NewRow(job, job_id, state, now, args)
                    for job_id, args in zip(ids, batch.args, strict=True)]
        return [NewRow(job, job_id, state, now, args, kwargs)
                for job_id, args, kwargs in zip(ids, batch.args, batch.kwargs, strict=True)]

    def _twin(self, job: NewJob, now: float) -> Row | None:
        cur = self.cursor
        window = job.unique_for if job.unique_for is not None else float("inf")
        rows = list(_dicts(cur.execute(sql.FIND_KEY, (job.task, job.key, now - window))))
        if not rows:
            return None
        twin = rows[0]
        if job.debounce is not None and twin["state"] not in ("scheduled", "queued"):
            # The twin already took older arguments (it runs or ran): the newest ones get a
            # job of their own, debounced from now.
            return None
        if job.debounce is not None:
            # expires_at counts from the run time, so it moves with it
            cur.execute(sql.DEBOUNCE, (job.run_at, job.run_at, job.args, job.kwargs,
                                   job.expires_at, twin["id"]))
            twin.update(state="scheduled", run_at=job.run_at, scheduled_at=job.run_at,
                        args=job.args, kwargs=job.kwargs, expires_at=job.expires_at)
        return twin
