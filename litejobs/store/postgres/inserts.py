"""The PostgreSQL store's inserts: one job, many (one statement per run of plain jobs or per
``NewJobs``), and a keyed job's live twin, exact across hosts by an advisory lock on its
task and key."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.job import State
from litejobs.newjob import NewJob, NewJobs
from litejobs.store.inserts import NewRow
from litejobs.store.postgres import sql
from litejobs.store.rows import Row

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgInsertsMixin"]


def _after(t: float | None, now: float) -> float | None:
    """A caller's time as its distance from the caller's ``now`` (see the package doc)."""
    return None if t is None else float(t - now)


def _state(job: NewJob, now: float) -> str:
    return State.SCHEDULED.value if job.run_at > now else State.QUEUED.value


def _row(job: NewJob, got: Row, state: str, args: Sequence[Any] | None = None,
         kwargs: Mapping[str, Any] | None = None) -> NewRow:
    """The new job's row, with the times the server gave it."""
    placed = dataclasses.replace(job, run_at=got["run_at"], expires_at=got["expires_at"])
    return NewRow(placed, int(got["id"]), state, got["created_at"], args, kwargs)


class PgInsertsMixin:
    """``PgTx``'s inserts (the ``ProducerTx`` protocol)."""

    conn: psycopg.Connection[Any]
    _queues_seen: set[str]

    if TYPE_CHECKING:
        def ring(self, message: bytes = b"e") -> None: ...  # PgTx's: pg_notify at commit

    def insert(self, job: NewJob, now: float, ring: bytes | None = None,
               ) -> Mapping[str, Any]:
        """Insert one job (or return its live twin of the same task and key). ``ring``: the
        bell's message to send at commit, in the INSERT's own statement when it can be."""
        conn = self.conn
        if job.key is not None:
            conn.execute(sql.LOCK_JOB_KEY, (job.task, job.key))
            twin = self._twin(job, now)
            if twin is not None:
                if ring is not None:
                    self.ring(ring)  # a debounce may have moved the twin
                return twin
        self._know_queues((job.queue,))
        state = _state(job, now)
        run_in = float(job.run_at - now)
        # Untagged: the ring rides in the INSERT (a tagged job rings after its tags).
        rung = ring is not None and job.tags is None
        params: tuple[Any, ...] = (
            job.task, job.queue, state, job.priority, job.args, job.kwargs, job.key, run_in,
            run_in, job.max_attempts, job.timeout, _after(job.expires_at, now),
            job.concurrency_key, job.concurrency_limit, job.tags, job.trace, job.flow_rate,
            job.flow_period)
        if rung:
            assert ring is not None
            got = conn.execute(sql.INSERT_JOB_RING,
                               (*params, ring.decode("ascii"))).fetchone()
        else:
            got = conn.execute(sql.INSERT_JOB, params).fetchone()
        assert got is not None
        if job.tags is not None:
            conn.execute(sql.INSERT_JOB_TAGS, (got["id"], job.tags))
        if ring is not None and not rung:
            self.ring(ring)
        return _row(job, got, state)

    def insert_many(self, jobs: Sequence[NewJob | NewJobs], now: float,
                    ring: bytes | None = None) -> list[Mapping[str, Any]]:
        """Insert ``jobs`` in order: keyed, tagged and traced ones one by one, runs of the
        others with one statement, each ``NewJobs`` with one statement; then ``ring`` (the
        bell's message, sent at commit), if given."""
        out = self._insert_all(jobs, now)
        if ring is not None and out:
            self.ring(ring)
        return out

    def _insert_all(self, jobs: Sequence[NewJob | NewJobs], now: float,
                    ) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []
        plain: list[NewJob] = []
        for job in jobs:
            if (isinstance(job, NewJob) and job.key is None and job.tags is None
                    and job.trace is None and job.flow_rate is None
                    and job.concurrency_key is None):
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
        new = set(queues) - self._queues_seen
        if new:
            # Queue rows are never deleted: once one is known to exist, inserts skip it.
            self.conn.execute(sql.INSERT_QUEUES, (sorted(new),))
            self._queues_seen.update(new)

    def _insert_plain(self, jobs: Sequence[NewJob], now: float) -> list[Mapping[str, Any]]:
        if len(jobs) < 2:
            return [self.insert(job, now) for job in jobs]
        self._know_queues(job.queue for job in jobs)
        states = [_state(job, now) for job in jobs]
        rows = self.conn.execute(sql.INSERT_JOBS, (
            [j.task for j in jobs], [j.queue for j in jobs], states,
            [j.priority for j in jobs], [j.args for j in jobs], [j.kwargs for j in jobs],
            [float(j.run_at - now) for j in jobs], [j.max_attempts for j in jobs],
            [None if j.timeout is None else float(j.timeout) for j in jobs],
            [_after(j.expires_at, now) for j in jobs])).fetchall()
        # ids are taken in array order (ORDER BY u.n), so sorted ids are in the jobs' order
        rows.sort(key=lambda r: r["id"])
        return [_row(job, got, state) for job, got, state in zip(jobs, rows, states,
                                                                   strict=True)]

    def _insert_batch(self, batch: NewJobs, now: float) -> list[Mapping[str, Any]]:
        job = batch.template
        self._know_queues((job.queue,))
        state = _state(job, now)
        statement = sql.INSERT_JOBS_JSON if batch.kwargs is None else sql.INSERT_JOBS_JSON_KW
        run_in = float(job.run_at - now)
        rows = self.conn.execute(statement, (
            job.task, job.queue, state, job.priority, run_in, run_in, job.max_attempts,
            job.timeout, _after(job.expires_at, now), job.concurrency_key,
            job.concurrency_limit, job.flow_rate, job.flow_period, batch.payload)).fetchall()
        rows.sort(key=lambda r: r["id"])
        if batch.kwargs is None:
            return [_row(job, got, state, args)
                    for got, args in zip(rows, batch.args, strict=True)]
        return [_row(job, got, state, args, kwargs)
                for got, args, kwargs in zip(rows, batch.args, batch.kwargs, strict=True)]

    def _twin(self, job: NewJob, now: float) -> Row | None:
        window = job.unique_for if job.unique_for is not None else float("inf")
        twin: Row | None = self.conn.execute(sql.FIND_KEY,
                                             (job.task, job.key, float(window))).fetchone()
        if twin is None:
            return None
        if job.debounce is not None and twin["state"] not in ("scheduled", "queued"):
            # The twin already took older arguments (it runs or ran): the newest ones get a
            # job of their own, debounced from now.
            return None
        if job.debounce is not None:
            run_in = float(job.run_at - now)
            moved = self.conn.execute(sql.DEBOUNCE, (
                run_in, run_in, job.args, job.kwargs, _after(job.expires_at, now),
                twin["id"])).fetchone()
            assert moved is not None
            twin.update(state="scheduled", args=job.args, kwargs=job.kwargs, **moved)
        return twin
