"""One write transaction's statements: claims with every limit, outcomes with fencing, cron
fires, leases, rescues and pruning. ``Store.write(fn)`` hands ``fn`` a ``Tx``."""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apsw

from litejobs.job import State
from litejobs.newjob import NewJob, NewJobs
from litejobs.serialization import encode
from litejobs.store import sql

__all__ = ["RATE_MARGIN", "NewJob", "NewJobs", "NewRow", "QueueLimits", "Row", "Tx",
           "pid_namespace", "sent_order"]

Row = dict[str, Any]
#: Extra seconds (at most 10% of the period) a rate window lasts beyond its period.
RATE_MARGIN = 0.1


def _scalar(target: apsw.Connection | apsw.Cursor, sql: str, params: Sequence[Any] = ()) -> Any:
    row = target.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _dicts(cursor: apsw.Cursor) -> Iterator[Row]:
    names: list[str] | None = None
    for values in cursor:
        if names is None:
            names = [d[0] for d in cursor.get_description()]
        yield dict(zip(names, values, strict=True))


@functools.lru_cache(maxsize=1024)
def _quoted(name: str) -> str:
    """A worker name as a JSON string (a few names, over and over)."""
    return json.dumps(name)


def _id_list(ids: Iterable[int]) -> str:
    """Job ids as a JSON array, for ``json_each``."""
    return "[" + ",".join(map(str, ids)) + "]"


def _claimed(row: Row) -> Row:
    """A claimed row as the supervisor uses it. Its text columns (read as bytes, see
    sql.CLAIM) become str; text that is not UTF-8 (written outside litejobs) stays bytes in
    the arguments, for the worker to fail that job, and gets replacement characters in the
    task and queue names. Numbers of the wrong type (also only from outside litejobs) get
    the defaults a new job has, so one odd row never stops the claim of the others."""
    for name in ("task", "queue", "args", "kwargs"):
        value = row[name]
        if type(value) is bytes:
            try:
                row[name] = value.decode()
            except UnicodeDecodeError:
                if name in ("task", "queue"):
                    row[name] = value.decode(errors="replace")
    if not (type(row["max_attempts"]) is int and type(row["interrupts"]) is int
            and type(row["crashes"]) is int and type(row["scheduled_at"]) is float
            and (row["timeout"] is None or type(row["timeout"]) is float)):
        _repair(row)
    return row


def _repair(row: Row) -> None:
    def number(value: Any, kind: type[int] | type[float], default: Any) -> Any:
        try:
            out = kind(value)
        except (TypeError, ValueError, OverflowError):
            return default
        return out if math.isfinite(out) and abs(out) < 2**62 else default

    row["max_attempts"] = max(1, number(row["max_attempts"], int, 1))
    row["interrupts"] = max(0, number(row["interrupts"], int, 0))
    row["crashes"] = max(0, number(row["crashes"], int, 0))
    row["scheduled_at"] = number(row["scheduled_at"], float, float(row["run_at"] or 0.0))
    if row["timeout"] is not None:
        row["timeout"] = number(row["timeout"], float, None)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def pid_namespace() -> str | None:
    """This process's PID namespace as ``"device:inode"`` of ``/proc/self/ns/pid`` (None where
    there is no such file): two processes share a namespace when these are equal, and a pid
    names the same process only inside one namespace."""
    try:
        st = os.stat("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


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
                "metadata": None,
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


#: Most jobs one claim parks (~8 µs each): a key that filled up with a long backlog is parked
#: over a few claims, each holding the write lock briefly; the claim that stops short sets
#: ``next_slot`` to now, so the supervisor claims again at once, not at its next poll.
PARK_PER_CLAIM = 10_000
#: Most looks for candidates one claim takes (each after parking at least one job).
CLAIM_ROUNDS = 16

#: A claim candidate: (-priority, run_at, id, queue, concurrency key, its limit); sorts best first.
#: The last element: the job has an expiry (it may start only in a slot that starts at once).
_Candidate = tuple[int, float, int, str, str | None, int, bool]


class _Slots:
    """The workers a claim hands jobs to, in order. Slots from ``ahead_from`` on are places
    behind a running job (sent ahead): a job there starts only when the jobs before it end."""

    __slots__ = ("ahead_from", "names", "used")

    def __init__(self, names: Sequence[str], ahead_from: int) -> None:
        self.names = names
        self.ahead_from = ahead_from
        self.used = 0

    @property
    def left(self) -> int:
        return len(self.names) - self.used

    @property
    def ahead(self) -> bool:
        """The next slot is behind a running job."""
        return self.used >= self.ahead_from

    def take(self) -> str:
        self.used += 1
        return self.names[self.used - 1]


def best_first(row: Mapping[str, Any]) -> tuple[int, float, int]:
    """The order ``claim`` returns jobs in and the supervisor sends them to a worker in."""
    return (-row["priority"], row["run_at"], row["id"])


def sent_order(row: Mapping[str, Any]) -> tuple[float, int, float, int]:
    """Where a running job stands among the jobs its worker was sent: by claim (its
    ``started_at`` while running is the claim's time), then best first. A rescue reads it
    from the rows alone to tell the job a worker ran first from the ones queued behind it."""
    return (row["started_at"] or 0.0, *best_first(row))


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """A queue as a claim sees it: its name and the limits its config sets."""

    name: str
    concurrency: int | None = None
    rate: tuple[int, float] | None = None  # (N, period in seconds): N starts per period


class Tx:
    """The statements a supervisor runs inside one write transaction."""

    def __init__(self, cursor: apsw.Cursor, queues_seen: set[str] | None = None) -> None:
        self.cursor = cursor
        self.next_slot: float | None = None
        self._queues_seen: set[str] = set() if queues_seen is None else queues_seen

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
        if job.tags is None:
            cur.execute(sql.INSERT_JOBS, _params(job, state, now))
            return NewRow(job, cur.connection.last_insert_rowid(), state, now)
        cur.execute(sql.INSERT_TAGGED_JOB, (*_params(job, state, now), job.tags))
        job_id = cur.connection.last_insert_rowid()
        cur.execute(sql.INSERT_JOB_TAGS, (job_id, job.tags))
        return NewRow(job, job_id, state, now)

    def insert_many(self, jobs: Sequence[NewJob | NewJobs], now: float,
                    ) -> list[Mapping[str, Any]]:
        """Insert ``jobs`` in order: keyed ones one by one (they may have a twin), runs of
        keyless ones with one ``executemany``, each ``NewJobs`` with one statement."""
        out: list[Mapping[str, Any]] = []
        plain: list[NewJob] = []
        for job in jobs:
            if isinstance(job, NewJob) and job.key is None and job.tags is None:
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
            batch.payload, top))
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

    # --- cron ---------------------------------------------------------------------------------

    def cron_entry(self, name: str) -> Row | None:
        rows = list(_dicts(self.cursor.execute(sql.SELECT_CRON_ENTRY, (name,))))
        return rows[0] if rows else None

    def cron_reset(self, name: str, schedule: str, since: float) -> None:
        """Start (or restart, after its schedule changed) an entry's history at ``since``."""
        self.cursor.execute(sql.UPSERT_CRON_ENTRY, (name, schedule, since))

    def cron_fire(self, entry: str, instant: float, job: NewJob | None, outcome: str,
                  now: float) -> int | None:
        """Mark ``instant`` of ``entry`` handled; with a job, insert it in this transaction.

        Returns the new job's id, or None when the instant was already handled (by another
        supervisor, or before a restart) or is recorded as skipped.
        """
        self.cursor.execute(sql.INSERT_CRON_FIRE, (entry, instant, outcome, now))
        if self.cursor.connection.changes() != 1 or job is None:
            return None
        job_id = int(self.insert(job, now)["id"])
        self.cursor.execute(sql.SET_CRON_FIRE_JOB, (job_id, entry, instant))
        return job_id

    def cron_advance(self, name: str, instant: float, job_id: int | None) -> None:
        self.cursor.execute(sql.ADVANCE_CRON_ENTRY, (instant, job_id, name))

    def job_state(self, job_id: int) -> str | None:
        value = _scalar(self.cursor, sql.SELECT_JOB_STATE, (job_id,))
        return None if value is None else str(value)

    def prune_cron_fires(self, before: float, limit: int = 500) -> int:
        self.cursor.execute(sql.PRUNE_CRON_FIRES, (before, limit))
        return self.cursor.connection.changes()

    def queues(self) -> list[tuple[str, bool]]:
        """The queues a claim may have to visit, by name, with their paused flag: every queue
        with queued jobs, and every paused one. Queue names with nothing queued are left out,
        so however many there are, a claim does not pay for them."""
        paused = {str(r[0]) for r in self.cursor.execute(sql.SELECT_PAUSED_QUEUES)}
        names = {str(r[0]) for r in self.cursor.execute(sql.QUEUES_WITH_JOBS)}
        return [(name, name in paused) for name in sorted(names | paused)]

    def claim(
        self, worker_ids: Sequence[str], queues: Iterable[QueueLimits], now: float, lease: float,
        ahead_from: int | None = None,
    ) -> list[Row]:
        """Claim up to ``len(worker_ids)`` queued jobs of ``queues``, best first, one per worker.

        Every limit is enforced here, inside the write transaction, so it holds across all
        workers and supervisors on the file: a queue's concurrency (running jobs of the queue),
        its rate limit (a sliding window of start times), each job's concurrency key (running
        jobs sharing the key), and expiry. Each claim bumps the attempt number (the fencing
        token) and takes a lease in the same statement. ``self.next_slot`` is set to the
        moment a rate-limited queue with waiting jobs gets its next slot.

        ``worker_ids[ahead_from:]`` are places behind a job their worker is running (sent
        ahead). A rate limit and an expiry are promises about starts, not claims, so jobs of a
        rate-limited queue and jobs with an expiry only go to the slots before ``ahead_from``,
        which start at once.
        """
        self.next_slot = None
        n = len(worker_ids)
        if n == 0:
            return []
        queues = list(queues)
        running: dict[str, int] = {}
        if any(q.concurrency is not None for q in queues):
            running = {str(q): int(c) for q, c in self.cursor.execute(sql.RUNNING_BY_QUEUE)}
        candidates: list[_Candidate] = []
        caps: dict[str, int] = {}
        for q in queues:
            cap = n
            if q.concurrency is not None:
                cap = min(cap, q.concurrency - running.get(q.name, 0))
            if q.rate is not None and cap > 0:
                count, period = q.rate
                # Starts are counted at claim; a job reaches its worker a few ms later, so the
                # window is a little longer than the period and the limit also holds for the
                # starts tasks see.
                period += min(RATE_MARGIN, period * 0.1)
                self.cursor.execute(sql.RATE_FORGET, (q.name, now - period))
                self.cursor.execute(sql.RATE_CLAMP, (q.name, now))
                used, oldest = self.cursor.execute(
                    sql.RATE_WINDOW, (q.name, now - period)).fetchone() or (0, None)
                if used >= count:
                    cap = 0
                    self._slot(q.name, (oldest or now) + period, now)
                else:
                    cap = min(cap, count - used)
            if cap <= 0:
                continue
            caps[q.name] = cap
            candidates.extend(self._candidates(q.name, now, cap))
        claimed: list[Row] = []
        workers = _Slots(worker_ids, n if ahead_from is None else ahead_from)
        limits = {q.name: q for q in queues}
        more = 0
        parked = 0
        for _ in range(CLAIM_ROUNDS):
            now_parked = self._claim_from(candidates, caps, limits, claimed, n, workers, now,
                                          lease, PARK_PER_CLAIM - parked)
            if not now_parked or len(claimed) == n:
                break
            parked += now_parked
            if parked >= PARK_PER_CLAIM:
                self._slot("", now, now)  # more to park (and maybe to claim): come back now
                break
            # The jobs of full keys took candidate places and are parked now: look again
            # (they are not candidates any more), a few places wider each round so that one
            # round can find several full keys, rather than leave workers idle until the
            # next poll.
            more += 16
            candidates = []
            for name, cap in caps.items():
                if cap > 0:
                    candidates.extend(self._candidates(name, now, cap + more))
            if not candidates:
                break
        # each worker starts its best job, the rest in order (see sent_order)
        claimed.sort(key=best_first)
        return claimed

    def _claim_from(
        self, candidates: list[_Candidate],
        caps: dict[str, int], limits: Mapping[str, QueueLimits], claimed: list[Row], n: int,
        workers: _Slots, now: float, lease: float, park: int,
    ) -> int:
        """Claim from ``candidates``, best first, into ``claimed``; returns how many jobs of
        full concurrency keys it parked (at most about ``park``): when some were, a fresh look
        may find other candidates."""
        candidates.sort()
        held_now: dict[str, int] = {}  # running jobs of each key met, this batch's included
        parked = 0
        parked_keys: set[str] = set()
        # Jobs with no key and no rate limit are claimed together, one statement per worker,
        # after the loop: a statement per job cost the supervisor more than the rest of a
        # claim. The others are claimed one by one because each changes what the next may do.
        batch: dict[str, list[int]] = {}
        for _, _, job_id, queue, ckey, climit, expires in candidates:
            if workers.left == 0:
                break
            if caps[queue] <= 0:
                continue
            if workers.ahead and (expires or limits[queue].rate is not None):
                continue  # it would start only after the job before it: not in time
            if ckey is not None:
                taken = held_now.get(ckey)
                if taken is None:  # first of its key in this batch: count the running ones
                    taken = int(_scalar(self.cursor, sql.COUNT_WITH_KEY, (ckey,)))
                if taken >= climit:
                    held_now[ckey] = taken
                    if ckey not in parked_keys and parked < park:
                        # Park the key's jobs that cannot run now: later claims skip them
                        # without reading them, until a job of the key stops (jobs_unpark).
                        parked_keys.add(ckey)
                        self.cursor.execute(sql.PARK_KEY, (ckey, taken, max(park - parked, 1)))
                        parked += self.cursor.connection.changes()
                    continue
                held_now[ckey] = taken + 1
            caps[queue] -= 1
            rate = limits[queue].rate
            if ckey is None and rate is None:
                batch.setdefault(workers.take(), []).append(job_id)
                continue
            row = next(map(_claimed, _dicts(self.cursor.execute(
                sql.CLAIM, (workers.take(), now + lease, now, job_id)))), None)
            if row is None:
                continue
            claimed.append(row)
            if rate is not None:
                self.cursor.execute(sql.RATE_START, (queue, now))
                if caps[queue] == 0:
                    period = rate[1] + min(RATE_MARGIN, rate[1] * 0.1)
                    oldest = _scalar(self.cursor, sql.RATE_OLDEST, (queue, now - period))
                    self._slot(queue, (oldest or now) + period, now)
        for worker, ids in batch.items():
            claimed.extend(map(_claimed, _dicts(self.cursor.execute(
                sql.CLAIM_MANY, (worker, now + lease, now, _id_list(ids))))))
        return parked

    def _candidates(self, queue: str, now: float, limit: int) -> list[_Candidate]:
        """The best ``limit`` claimable jobs of a queue (keys already at their limit and
        expired jobs left out), as sortable tuples."""
        return [(-priority, run_at, job_id, queue, ckey, climit or 1, bool(expires))
                for job_id, priority, run_at, ckey, climit, expires in self.cursor.execute(
                    sql.CLAIM_CANDIDATES, (queue, now, limit))]

    def _slot(self, queue: str, at: float, now: float) -> None:
        at = max(at, now)
        if self.next_slot is None or at < self.next_slot:
            self.next_slot = at

    def adopt_orphan_queues(self) -> int:
        """Give every queue with queued jobs a row (for listings and stats: claims find the
        queues with queued jobs from the jobs themselves)."""
        self.cursor.execute(sql.ADOPT_QUEUES)
        return self.cursor.connection.changes()

    def expire_due(self, now: float, limit: int = 500) -> int:
        """Cancel (reason "expired") pending jobs not started by their ``expires_at``; returns
        how many. Also runs ``unpark_free`` (the supervisor calls this once a poll)."""
        self.cursor.execute(sql.EXPIRE_DUE, (now, now, limit))
        expired = self.cursor.connection.changes()
        self.unpark_free()
        return expired

    def unpark_free(self) -> int:
        """Give each concurrency key with parked jobs and a free slot its best parked job that
        fits back to the claims. The trigger ``jobs_unpark`` does this as slots come free; this
        catches a slot whose job given back could not be claimed (its queue paused, or served
        by no supervisor) and would otherwise keep the key's other jobs waiting."""
        self.cursor.execute(sql.UNPARK_FREE)
        return self.cursor.connection.changes()

    def promote_due(self, now: float, limit: int = 1000) -> int:
        self.cursor.execute(sql.PROMOTE_DUE, (now, limit))
        return self.cursor.connection.changes()

    def succeed(
        self, job_id: int, attempt: int, result: str, worker: str, started: float, now: float
    ) -> bool:
        """Record a successful attempt; False (and a ``stale`` attempt) if it lost its lease."""
        self.cursor.execute(sql.FINISH_SUCCEEDED, (result, started, now, worker, job_id, attempt))
        if self.cursor.connection.changes() == 1:
            return True
        self._stale(job_id, attempt, worker, started, now, "reported success")
        return False

    def set_progress_many(
            self, updates: Sequence[tuple[int, int, float | None, str | None, str | None]],
    ) -> int:
        """Write running jobs' newest ``(job_id, attempt, fraction, message, metadata)`` in
        one statement (metadata: JSON text of an object, merged as a JSON merge patch; None
        leaves a value as it is). An attempt no longer running is left alone: its progress
        came too late. Returns how many jobs were written."""
        if not updates:
            return 0
        # metadata is JSON text already (protocol.decode_report wrote it): spliced in as is
        text = "[" + ",".join(f"[{int(i)},{int(n)},{json.dumps(f)},{json.dumps(m)},"
                              f"{'null' if md is None else md}]"
                              for i, n, f, m, md in updates) + "]"
        self.cursor.execute(sql.SET_PROGRESS_MANY, (text,))
        return int(self.cursor.connection.changes())

    def succeed_many(self, done: Sequence[tuple[int, int, str, str, float, float]]) -> int:
        """``succeed`` for many ``(job_id, attempt, result, worker, started, now)`` in one
        statement; returns how many were recorded (the others become ``stale`` attempts)."""
        if len(done) < 2:
            return sum(self.succeed(*d) for d in done)
        text = "[" + ",".join(
            f"[{job_id},{attempt},{result},{started!r},{now!r},{_quoted(worker)}]"
            for job_id, attempt, result, worker, started, now in done) + "]"
        recorded = {int(r[0]) for r in self.cursor.execute(sql.FINISH_SUCCEEDED_MANY, (text,))}
        for job_id, attempt, _, worker, started, now in done:
            if job_id not in recorded:
                self._stale(job_id, attempt, worker, started, now, "reported success")
        return len(recorded)

    def fail(
        self,
        job_id: int,
        attempt: int,
        error: str,
        traceback: str | None,
        worker: str | None,
        started: float | None,
        now: float,
        retry_at: float | None,
        crashed: bool = False,
    ) -> bool:
        """Record a failed attempt: scheduled again at ``retry_at``, or failed when it is None."""
        crash = 1 if crashed else 0
        if retry_at is None:
            self.cursor.execute(sql.FINISH_FAILED, (error, crash, now, job_id, attempt))
        else:
            state = State.SCHEDULED.value if retry_at > now else State.QUEUED.value
            self.cursor.execute(
                sql.FINISH_RETRY, (state, max(retry_at, now), error, crash, job_id, attempt)
            )
        if self.cursor.connection.changes() == 1:
            self._attempt(job_id, attempt, "failed", worker, started, now, error, traceback)
            return True
        self._stale(job_id, attempt, worker, started, now, f"reported failure: {error}")
        return False

    def interrupt(
        self, job_id: int, attempt: int, reason: str, worker: str | None, started: float | None,
        now: float,
    ) -> bool:
        """Put a running job back to queued without counting the attempt (drain)."""
        self.cursor.execute(sql.REQUEUE_INTERRUPTED, (now, job_id, attempt))
        if self.cursor.connection.changes() == 1:
            self._attempt(job_id, attempt, "interrupted", worker, started, now, reason, None)
            return True
        return False

    def unclaim(self, job_id: int, attempt: int) -> bool:
        """Return a claimed job that never reached its worker's hands (it waited in a dead or
        stopped worker's backlog) to queued, taking back the attempt number. Safe because only
        the supervisor that claimed it records its outcomes, and it has let go of it."""
        self.cursor.execute(sql.UNCLAIM, (job_id, attempt))
        return self.cursor.connection.changes() == 1

    def renew(self, leases: Iterable[tuple[int, int]], until: float) -> list[tuple[int, int]]:
        """Extend the leases of ``(job_id, attempt)`` pairs; returns the pairs that were lost."""
        lost: list[tuple[int, int]] = []
        for job_id, attempt in leases:
            self.cursor.execute(sql.RENEW_LEASE, (until, job_id, attempt))
            if self.cursor.connection.changes() != 1:
                lost.append((job_id, attempt))
        return lost

    def expired_leases(self, now: float, limit: int = 500) -> list[Row]:
        return list(_dicts(self.cursor.execute(sql.EXPIRED_LEASES, (now, limit))))

    def leases_of(self, prefix: str) -> list[Row]:
        """Running jobs whose ``leased_by`` starts with ``prefix`` (a supervisor's id)."""
        return list(_dicts(self.cursor.execute(sql.RUNNING_LEASES, (_like_prefix(prefix),))))

    def prune(self, before: float, limit: int = 500) -> int:
        self.cursor.execute(sql.PRUNE, (before, limit))
        return self.cursor.connection.changes()

    def heartbeat(
        self, supervisor: str, hostname: str, pid: int, started: float, now: float, queues: str
    ) -> None:
        """Record that ``supervisor`` (this process: its PID namespace is read here) lives."""
        self.cursor.execute(sql.UPSERT_SUPERVISOR,
                            (supervisor, hostname, pid, started, now, queues, pid_namespace()))

    def forget_supervisor(self, supervisor: str) -> None:
        self.cursor.execute(sql.DELETE_SUPERVISOR, (supervisor,))

    def forget_supervisors_before(self, before: float) -> None:
        self.cursor.execute(sql.DELETE_OLD_SUPERVISORS, (before,))

    def _attempt(
        self, job_id: int, attempt: int, outcome: str, worker: str | None,
        started: float | None, finished: float, error: str | None, traceback: str | None,
    ) -> None:
        self.cursor.execute(sql.RECORD_ATTEMPT, (job_id, attempt, outcome, worker, started,
                                                 finished, error, traceback))

    def _stale(
        self, job_id: int, attempt: int, worker: str | None, started: float | None,
        finished: float, what: str,
    ) -> None:
        # The job may have been pruned or deleted meanwhile; only record against a live row.
        if self.cursor.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
            return
        self.cursor.execute(
            sql.RECORD_STALE,
            (job_id, attempt, worker, started, finished,
             f"stale: attempt {attempt} {what} after losing its lease; outcome refused", None),
        )
