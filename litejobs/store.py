"""The job store: the only module that imports apsw or holds SQL.

One WAL-mode SQLite file holds every job, attempt, queue and supervisor. Each write is one short
``BEGIN IMMEDIATE`` transaction (a deferred one that upgrades to a write lock gets SQLITE_BUSY at
once, whatever the busy timeout), retried whole on SQLITE_BUSY with a bounded, jittered back-off.
Every state change is a guarded ``UPDATE … WHERE id = ? AND state IN (…)`` whose row count is
checked; finishing, retrying or renewing an attempt also matches the attempt number, the fencing
token that keeps a stale attempt from overwriting a newer one.

Connections are per process and per thread: a connection never crosses a ``fork`` (a child that
inherits one leaves it alone and opens its own).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import apsw

from litejobs.errors import StorageError, StorageFull
from litejobs.job import TRANSITIONS, Attempt, State, sources

__all__ = ["SCHEMA_VERSION", "NewJob", "QueueLimits", "Store", "Tx"]

SCHEMA_VERSION = 1
#: PRAGMA application_id of a litejobs file ("LJOB"): tells our files from other programs'.
APPLICATION_ID = 0x4C4A4F42
SQLITE_HEADER = b"SQLite format 3\x00"
#: Extra seconds (at most 10% of the period) a rate window lasts beyond its period.
RATE_MARGIN = 0.1
#: How long a write keeps retrying SQLITE_BUSY before it gives up with a StorageError.
BUSY_DEADLINE = 60.0

T = TypeVar("T")
Row = dict[str, Any]

_STATES = ", ".join(f"'{s.value}'" for s in State)
# A plain boolean per source state: SQLite checks it in well under a microsecond, where a
# row-value `NOT IN (VALUES …)` costs several per update on the hottest statements.
_LEGAL_MOVES = "\n     OR ".join(
    f"(old.state = '{a.value}' AND new.state IN "
    f"({', '.join(repr(b.value) for b in sorted(targets))}))"
    for a, targets in TRANSITIONS.items() if targets
)

SCHEMA = f"""
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    task          TEXT    NOT NULL,
    queue         TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ({_STATES})),
    priority      INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN -100 AND 100),
    args          TEXT    NOT NULL,
    kwargs        TEXT    NOT NULL,
    key           TEXT,
    run_at        REAL    NOT NULL,
    scheduled_at  REAL    NOT NULL,
    created_at    REAL    NOT NULL,
    attempt       INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL CHECK (max_attempts >= 1),
    interrupts    INTEGER NOT NULL DEFAULT 0,
    crashes       INTEGER NOT NULL DEFAULT 0,
    timeout       REAL,
    expires_at    REAL,
    concurrency_key   TEXT,
    concurrency_limit INTEGER,
    leased_by     TEXT,
    lease_until   REAL,
    started_at    REAL,
    finished_at   REAL,
    result        TEXT,
    error         TEXT,
    CHECK (state != 'running' OR (leased_by IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK (attempt - interrupts <= max_attempts OR state != 'running')
);
CREATE INDEX jobs_queued    ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_scheduled ON jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_running   ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_finished  ON jobs (finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX jobs_task      ON jobs (task);
CREATE INDEX jobs_key       ON jobs (task, key, created_at) WHERE key IS NOT NULL;
CREATE INDEX jobs_ckey      ON jobs (concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_expiry    ON jobs (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('scheduled', 'queued');

-- Start times of rate-limited queues' jobs: the sliding window each claim counts.
CREATE TABLE rate_starts (
    queue TEXT NOT NULL,
    at    REAL NOT NULL
);
CREATE INDEX rate_starts_window ON rate_starts (queue, at);

-- The schema repeats TRANSITIONS: no update may move a job along an edge it does not list.
CREATE TRIGGER jobs_transition BEFORE UPDATE OF state ON jobs
WHEN old.state != new.state AND NOT ({_LEGAL_MOVES})
BEGIN
    SELECT RAISE(ABORT, 'litejobs: illegal state transition');
END;

CREATE TABLE attempts (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL
                CHECK (outcome IN ('succeeded', 'failed', 'interrupted', 'stale')),
    worker      TEXT,
    started_at  REAL,
    finished_at REAL,
    error       TEXT,
    traceback   TEXT,
    PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;

CREATE TABLE queues (
    name   TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- One row per cron entry: its schedule as last seen and the newest instant it handled.
CREATE TABLE cron_entries (
    name         TEXT PRIMARY KEY,
    schedule     TEXT NOT NULL,
    since        REAL NOT NULL,
    last_instant REAL,
    last_job     INTEGER
) WITHOUT ROWID;

-- The exactly-once guarantee: an (entry, instant) row is written in the same transaction as
-- the job it fires, so no instant can make two jobs, across restarts and supervisors.
CREATE TABLE cron_fires (
    entry    TEXT NOT NULL,
    instant  REAL NOT NULL,
    outcome  TEXT NOT NULL CHECK (outcome IN ('fired', 'skipped_overlap', 'skipped_misfire')),
    job_id   INTEGER,
    fired_at REAL NOT NULL,
    PRIMARY KEY (entry, instant)
) WITHOUT ROWID;

CREATE TABLE supervisors (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    queues       TEXT NOT NULL
) WITHOUT ROWID;
"""

#: Migrations from version N to N+1, by N. Each runs inside the upgrading transaction.
MIGRATIONS: dict[int, str] = {}

JOB_COLUMNS = (
    "id, task, queue, state, priority, args, kwargs, key, run_at, scheduled_at, created_at, "
    "attempt, max_attempts, interrupts, crashes, timeout, expires_at, concurrency_key, "
    "concurrency_limit, leased_by, lease_until, "
    "started_at, finished_at, result, error"
)


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job to insert, already validated and encoded."""

    task: str
    queue: str
    priority: int
    args: str
    kwargs: str
    run_at: float
    max_attempts: int
    timeout: float | None
    key: str | None = None
    expires_at: float | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    #: The idempotency window: a live job of the same task and key younger than this is
    #: returned instead of a new one.
    unique_for: float | None = None
    #: With a key: push a pending job of that key back to now + debounce, newest arguments.
    debounce: float | None = None


IDENTITY = (
    "SELECT (SELECT application_id FROM pragma_application_id()), "
    "(SELECT user_version FROM pragma_user_version()), "
    "(SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%')"
)


def _retry_busy(fn: Callable[[], T]) -> T:
    """Run ``fn`` again on SQLITE_BUSY until BUSY_DEADLINE. For statements SQLite may refuse
    at once, without its busy handler (switching to WAL while another process does)."""
    deadline = time.monotonic() + BUSY_DEADLINE
    pause = 0.001
    while True:
        try:
            return fn()
        except apsw.BusyError:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, 0.1)


def _scalar(target: apsw.Connection | apsw.Cursor, sql: str, params: Sequence[Any] = ()) -> Any:
    row = target.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _dicts(cursor: apsw.Cursor) -> Iterator[Row]:
    names: list[str] | None = None
    for values in cursor:
        if names is None:
            names = [d[0] for d in cursor.get_description()]
        yield dict(zip(names, values, strict=True))


def _storage_error(path: str, exc: apsw.Error) -> StorageError:
    if isinstance(exc, apsw.FullError):
        return StorageFull(
            f"the disk holding {path} is full; nothing was written. Free some space and try "
            "again (`litejobs doctor` shows the free space)"
        )
    if isinstance(exc, apsw.ReadOnlyError):
        return StorageError(
            f"{path} is read-only ({exc}); make the file and its directory writable by this "
            "user, then try again"
        )
    if isinstance(exc, apsw.CorruptError | apsw.NotADBError):
        return StorageError(
            f"{path} is corrupt ({exc}); litejobs will not write to it. Restore it from a "
            "backup or move it aside and start a new file"
        )
    if isinstance(exc, apsw.CantOpenError):
        directory = os.path.dirname(path)
        if not os.access(directory, os.W_OK | os.X_OK):
            return StorageError(
                f"cannot open {path} ({exc}): its directory {directory} is read-only or not "
                "writable by this user, and SQLite must create the -wal and -shm files there; "
                "make the directory writable, then try again"
            )
        return StorageError(
            f"cannot open {path} ({exc}); check that it and its -wal and -shm files are "
            "readable and writable by this user (`litejobs doctor` checks)"
        )
    if isinstance(exc, apsw.BusyError):
        return StorageError(
            f"{path} stayed locked for {BUSY_DEADLINE:.0f} s; another program holds a long "
            "write transaction on it. Find it (`fuser` on the file) and end it"
        )
    return StorageError(f"{path}: {type(exc).__name__}: {exc}; run `litejobs doctor`")


# --- statements ------------------------------------------------------------------------------

INSERT_JOB = """
INSERT INTO jobs (task, queue, state, priority, args, kwargs, key, run_at, scheduled_at,
                  created_at, max_attempts, timeout, expires_at, concurrency_key,
                  concurrency_limit)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id
"""
INSERT_QUEUE = "INSERT OR IGNORE INTO queues (name) VALUES (?)"
FIND_KEY = f"""
SELECT {JOB_COLUMNS} FROM jobs
WHERE task = ? AND key = ? AND created_at >= ? AND state NOT IN ('failed', 'cancelled')
ORDER BY id DESC LIMIT 1
"""
DEBOUNCE = """
UPDATE jobs SET state = 'scheduled', run_at = ?, scheduled_at = ?, args = ?, kwargs = ?,
                expires_at = ?
WHERE id = ? AND state IN ('scheduled', 'queued')
"""
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
SELECT_ATTEMPTS = (
    "SELECT attempt, outcome, worker, started_at, finished_at, error, traceback "
    "FROM attempts WHERE job_id = ? ORDER BY attempt"
)
SELECT_FOR_CANCEL = "SELECT state, attempt, started_at, leased_by FROM jobs WHERE id = ?"
CANCEL_JOB = f"""
UPDATE jobs SET state = 'cancelled', error = ?, finished_at = ?, leased_by = NULL,
                lease_until = NULL
WHERE id = ? AND state IN ({", ".join(f"'{s.value}'" for s in sources(State.CANCELLED))})
"""
RETRY_JOB = """
UPDATE jobs SET state = 'queued', run_at = ?, max_attempts = attempt - interrupts + ?,
                crashes = 0, error = NULL, finished_at = NULL, result = NULL
WHERE id = ? AND state IN ('failed', 'cancelled')
"""
SELECT_QUEUES = "SELECT name, paused FROM queues ORDER BY name"
CLAIM_CANDIDATES = """
SELECT id, priority, run_at, concurrency_key, concurrency_limit
FROM jobs j
WHERE state = 'queued' AND queue = ? AND (expires_at IS NULL OR expires_at >= ?)
  AND (concurrency_key IS NULL OR (SELECT count(*) FROM jobs r WHERE r.state = 'running'
                                   AND r.concurrency_key = j.concurrency_key)
                                  < concurrency_limit)
ORDER BY priority DESC, run_at, id
LIMIT ?
"""
COUNT_WITH_KEY = "SELECT count(*) FROM jobs WHERE state = 'running' AND concurrency_key = ?"
RUNNING_BY_QUEUE = "SELECT queue, count(*) FROM jobs WHERE state = 'running' GROUP BY queue"
RATE_WINDOW = "SELECT count(*), min(at) FROM rate_starts WHERE queue = ? AND at > ?"
RATE_OLDEST = "SELECT min(at) FROM rate_starts WHERE queue = ? AND at > ?"
RATE_FORGET = "DELETE FROM rate_starts WHERE queue = ? AND at <= ?"
RATE_START = "INSERT INTO rate_starts (queue, at) VALUES (?, ?)"
EXPIRE_DUE = """
UPDATE jobs SET state = 'cancelled', finished_at = ?,
    error = 'expired: not started within ' || printf('%g', expires_at - run_at)
            || ' s of its run time'
WHERE id IN (SELECT id FROM jobs WHERE expires_at IS NOT NULL AND expires_at < ?
             AND state IN ('scheduled', 'queued') LIMIT ?)
"""
ADOPT_QUEUES = """
INSERT OR IGNORE INTO queues (name) SELECT DISTINCT queue FROM jobs WHERE state = 'queued'
"""
SET_PAUSED = """
INSERT INTO queues (name, paused) VALUES (?, ?)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused
"""
CLAIM = """
UPDATE jobs SET state = 'running', attempt = attempt + 1, leased_by = ?, lease_until = ?,
                started_at = ?
WHERE id = ? AND state = 'queued'
RETURNING id, task, queue, args, kwargs, attempt, max_attempts, interrupts, crashes, timeout,
          scheduled_at, leased_by
"""
PROMOTE_DUE = """
UPDATE jobs SET state = 'queued'
WHERE id IN (SELECT id FROM jobs WHERE state = 'scheduled' AND run_at <= ?
             ORDER BY run_at LIMIT ?)
"""
NEXT_SCHEDULED = "SELECT min(run_at) FROM jobs WHERE state = 'scheduled'"
# The successful attempt is not copied to `attempts`: the job row holds it (started_at,
# finished_at, leased_by = its worker), which saves an insert on the hottest path.
FINISH_SUCCEEDED = """
UPDATE jobs SET state = 'succeeded', result = ?, error = NULL, started_at = ?, finished_at = ?,
                leased_by = ?, lease_until = NULL
WHERE id = ? AND attempt = ? AND state = 'running'
"""
FINISH_RETRY = """
UPDATE jobs SET state = ?, run_at = ?, error = ?, crashes = crashes + ?, leased_by = NULL,
                lease_until = NULL
WHERE id = ? AND attempt = ? AND state = 'running'
"""
FINISH_FAILED = """
UPDATE jobs SET state = 'failed', error = ?, crashes = crashes + ?, finished_at = ?,
                leased_by = NULL, lease_until = NULL
WHERE id = ? AND attempt = ? AND state = 'running'
"""
REQUEUE_INTERRUPTED = """
UPDATE jobs SET state = 'queued', run_at = ?, interrupts = interrupts + 1, leased_by = NULL,
                lease_until = NULL
WHERE id = ? AND attempt = ? AND state = 'running'
"""
UNCLAIM = """
UPDATE jobs SET state = 'queued', attempt = attempt - 1, leased_by = NULL, lease_until = NULL,
                started_at = NULL
WHERE id = ? AND attempt = ? AND state = 'running'
"""
RECORD_ATTEMPT = """
INSERT INTO attempts (job_id, attempt, outcome, worker, started_at, finished_at, error, traceback)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id, attempt) DO NOTHING
"""
RECORD_STALE = """
INSERT INTO attempts (job_id, attempt, outcome, worker, started_at, finished_at, error, traceback)
VALUES (?, ?, 'stale', ?, ?, ?, ?, ?)
ON CONFLICT (job_id, attempt) DO UPDATE SET
    outcome = 'stale',
    error = coalesce(attempts.error || '; ', '') || excluded.error
"""
RENEW_LEASE = """
UPDATE jobs SET lease_until = ? WHERE id = ? AND attempt = ? AND state = 'running'
"""
EXPIRED_LEASES = """
SELECT id, task, attempt, max_attempts, interrupts, crashes, leased_by, started_at
FROM jobs WHERE state = 'running' AND lease_until < ? ORDER BY lease_until LIMIT ?
"""
RUNNING_LEASES = """
SELECT id, task, attempt, max_attempts, interrupts, crashes, leased_by, started_at
FROM jobs WHERE state = 'running' AND leased_by LIKE ? ESCAPE '\\'
"""
HELD_BY = "SELECT id, attempt FROM jobs WHERE state = 'running' AND leased_by LIKE ? ESCAPE '\\'"
PRUNE = """
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?
    ORDER BY finished_at LIMIT ?)
"""
SELECT_CRON_ENTRY = (
    "SELECT name, schedule, since, last_instant, last_job FROM cron_entries WHERE name = ?"
)
UPSERT_CRON_ENTRY = """
INSERT INTO cron_entries (name, schedule, since) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, since = excluded.since
"""
ADVANCE_CRON_ENTRY = """
UPDATE cron_entries SET last_instant = max(coalesce(last_instant, 0), ?),
                        last_job = coalesce(?, last_job)
WHERE name = ?
"""
INSERT_CRON_FIRE = """
INSERT OR IGNORE INTO cron_fires (entry, instant, outcome, fired_at) VALUES (?, ?, ?, ?)
"""
SET_CRON_FIRE_JOB = "UPDATE cron_fires SET job_id = ? WHERE entry = ? AND instant = ?"
SELECT_JOB_STATE = "SELECT state FROM jobs WHERE id = ?"
SELECT_CRON_ENTRIES = """
SELECT e.name, e.schedule, e.since, e.last_instant, e.last_job, j.state AS last_state
FROM cron_entries e LEFT JOIN jobs j ON j.id = e.last_job
ORDER BY e.name
"""
PRUNE_CRON_FIRES = """
DELETE FROM cron_fires WHERE (entry, instant) IN (
    SELECT entry, instant FROM cron_fires WHERE fired_at < ? LIMIT ?)
"""

RUNNING_IN_QUEUE = (
    "SELECT id FROM jobs WHERE state = 'running' AND queue = ? ORDER BY started_at LIMIT ?"
)
COUNT_RUNNING_IN_QUEUE = "SELECT count(*) FROM jobs WHERE state = 'running' AND queue = ?"
RUNNING_WITH_KEY = (
    "SELECT id FROM jobs WHERE state = 'running' AND concurrency_key = ? ORDER BY started_at"
)
AHEAD_IN_QUEUE = """
SELECT count(*) FROM jobs
WHERE state = 'queued' AND queue = :queue
  AND (priority > :priority OR (priority = :priority AND (run_at < :run_at
       OR (run_at = :run_at AND id < :id))))
"""
SELECT_PAUSED = "SELECT paused FROM queues WHERE name = ?"

UPSERT_SUPERVISOR = """
INSERT INTO supervisors (id, hostname, pid, started_at, heartbeat_at, queues)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at
"""
DELETE_SUPERVISOR = "DELETE FROM supervisors WHERE id = ?"
DELETE_OLD_SUPERVISORS = "DELETE FROM supervisors WHERE heartbeat_at < ?"
SELECT_SUPERVISORS = (
    "SELECT id, hostname, pid, started_at, heartbeat_at, queues FROM supervisors ORDER BY id"
)
COUNT_EXPIRED_LEASES = "SELECT count(*) FROM jobs WHERE state = 'running' AND lease_until < ?"
COUNT_RUNNING = "SELECT count(*) FROM jobs WHERE state = 'running'"
COUNT_QUEUED = "SELECT count(*) FROM jobs WHERE state = 'queued'"
OLDEST_QUEUED = "SELECT min(run_at) FROM jobs WHERE state = 'queued'"
COUNT_BY_QUEUE_STATE = "SELECT queue, state, count(*) FROM jobs GROUP BY queue, state"


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


#: A claim candidate: (-priority, run_at, id, queue, concurrency key, its limit); sorts best first.
_Candidate = tuple[int, float, int, str, str | None, int]


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

    def insert(self, job: NewJob, now: float) -> Row:
        """Insert one job (or return its live twin of the same task and key)."""
        cur = self.cursor
        if job.key is not None:
            twin = self._twin(job, now)
            if twin is not None:
                return twin
        if job.queue not in self._queues_seen:
            # Queue rows are never deleted, so once one is known to exist this process skips
            # the statement (the set is shared by this Store's transactions).
            cur.execute(INSERT_QUEUE, (job.queue,))
            self._queues_seen.add(job.queue)
        state = State.SCHEDULED.value if job.run_at > now else State.QUEUED.value
        job_id = _scalar(cur, INSERT_JOB, (
            job.task, job.queue, state, job.priority, job.args, job.kwargs, job.key,
            job.run_at, job.run_at, now, job.max_attempts, job.timeout, job.expires_at,
            job.concurrency_key, job.concurrency_limit,
        ))
        return {
            "id": int(job_id), "task": job.task, "queue": job.queue, "state": state,
            "priority": job.priority, "args": job.args, "kwargs": job.kwargs,
            "key": job.key, "run_at": job.run_at, "scheduled_at": job.run_at,
            "created_at": now, "attempt": 0, "max_attempts": job.max_attempts,
            "interrupts": 0, "crashes": 0, "timeout": job.timeout,
            "expires_at": job.expires_at, "concurrency_key": job.concurrency_key,
            "concurrency_limit": job.concurrency_limit, "leased_by": None, "lease_until": None,
            "started_at": None, "finished_at": None, "result": None, "error": None,
        }

    def _twin(self, job: NewJob, now: float) -> Row | None:
        cur = self.cursor
        window = job.unique_for if job.unique_for is not None else float("inf")
        rows = list(_dicts(cur.execute(FIND_KEY, (job.task, job.key, now - window))))
        if not rows:
            return None
        twin = rows[0]
        if job.debounce is not None and twin["state"] not in ("scheduled", "queued"):
            # The twin already took older arguments (it runs or ran): the newest ones get a
            # job of their own, debounced from now.
            return None
        if job.debounce is not None:
            # expires_at counts from the run time, so it moves with it
            cur.execute(DEBOUNCE, (job.run_at, job.run_at, job.args, job.kwargs,
                                   job.expires_at, twin["id"]))
            twin.update(state="scheduled", run_at=job.run_at, scheduled_at=job.run_at,
                        args=job.args, kwargs=job.kwargs, expires_at=job.expires_at)
        return twin

    # --- cron ---------------------------------------------------------------------------------

    def cron_entry(self, name: str) -> Row | None:
        rows = list(_dicts(self.cursor.execute(SELECT_CRON_ENTRY, (name,))))
        return rows[0] if rows else None

    def cron_reset(self, name: str, schedule: str, since: float) -> None:
        """Start (or restart, after its schedule changed) an entry's history at ``since``."""
        self.cursor.execute(UPSERT_CRON_ENTRY, (name, schedule, since))

    def cron_fire(self, entry: str, instant: float, job: NewJob | None, outcome: str,
                  now: float) -> int | None:
        """Mark ``instant`` of ``entry`` handled; with a job, insert it in this transaction.

        Returns the new job's id, or None when the instant was already handled (by another
        supervisor, or before a restart) or is recorded as skipped.
        """
        self.cursor.execute(INSERT_CRON_FIRE, (entry, instant, outcome, now))
        if self.cursor.connection.changes() != 1 or job is None:
            return None
        job_id = int(self.insert(job, now)["id"])
        self.cursor.execute(SET_CRON_FIRE_JOB, (job_id, entry, instant))
        return job_id

    def cron_advance(self, name: str, instant: float, job_id: int | None) -> None:
        self.cursor.execute(ADVANCE_CRON_ENTRY, (instant, job_id, name))

    def job_state(self, job_id: int) -> str | None:
        value = _scalar(self.cursor, SELECT_JOB_STATE, (job_id,))
        return None if value is None else str(value)

    def prune_cron_fires(self, before: float, limit: int = 500) -> int:
        self.cursor.execute(PRUNE_CRON_FIRES, (before, limit))
        return self.cursor.connection.changes()

    def queues(self) -> list[tuple[str, bool]]:
        return [(str(n), bool(p)) for n, p in self.cursor.execute(SELECT_QUEUES)]

    def claim(
        self, worker_ids: Sequence[str], queues: Iterable[QueueLimits], now: float, lease: float
    ) -> list[Row]:
        """Claim up to ``len(worker_ids)`` queued jobs of ``queues``, best first, one per worker.

        Every limit is enforced here, inside the write transaction, so it holds across all
        workers and supervisors on the file: a queue's concurrency (running jobs of the queue),
        its rate limit (a sliding window of start times), each job's concurrency key (running
        jobs sharing the key), and expiry. Each claim bumps the attempt number (the fencing
        token) and takes a lease in the same statement. ``self.next_slot`` is set to the
        moment a rate-limited queue with waiting jobs gets its next slot.
        """
        self.next_slot = None
        n = len(worker_ids)
        if n == 0:
            return []
        queues = list(queues)
        running: dict[str, int] = {}
        if any(q.concurrency is not None for q in queues):
            running = {str(q): int(c) for q, c in self.cursor.execute(RUNNING_BY_QUEUE)}
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
                self.cursor.execute(RATE_FORGET, (q.name, now - period))
                used, oldest = self.cursor.execute(
                    RATE_WINDOW, (q.name, now - period)).fetchone() or (0, None)
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
        workers = iter(worker_ids)
        limits = {q.name: q for q in queues}
        while True:
            before = len(claimed)
            skipped = self._claim_from(candidates, caps, limits, claimed, n, workers, now,
                                       lease)
            if not skipped or len(claimed) in (n, before):
                return claimed
            # Jobs of a key this batch just filled took candidate places that other keys'
            # jobs could use: look again (the claimed ones now count as running, so the
            # query skips their keys) rather than leave workers idle until the next poll.
            candidates = []
            for name, cap in caps.items():
                if cap > 0:
                    candidates.extend(self._candidates(name, now, cap))
            if not candidates:
                return claimed

    def _claim_from(
        self, candidates: list[_Candidate],
        caps: dict[str, int], limits: Mapping[str, QueueLimits], claimed: list[Row], n: int,
        workers: Iterator[str], now: float, lease: float,
    ) -> bool:
        """Claim from ``candidates``, best first, into ``claimed``; True when a candidate was
        passed over because this batch had already filled its concurrency key."""
        candidates.sort()
        held_now: dict[str, int] = {}
        skipped = False
        for _, _, job_id, queue, ckey, climit in candidates:
            if len(claimed) == n:
                break
            if caps[queue] <= 0:
                continue
            if ckey is not None:
                taken = held_now.get(ckey)
                if taken is None:  # first of its key in this batch: count the running ones
                    taken = int(_scalar(self.cursor, COUNT_WITH_KEY, (ckey,)))
                if taken >= climit:
                    skipped = skipped or ckey in held_now
                    continue
                held_now[ckey] = taken + 1
            caps[queue] -= 1
            row = next(_dicts(self.cursor.execute(CLAIM, (next(workers), now + lease, now,
                                                          job_id))), None)
            if row is None:
                continue
            claimed.append(row)
            rate = limits[queue].rate
            if rate is not None:
                self.cursor.execute(RATE_START, (queue, now))
                if caps[queue] == 0:
                    period = rate[1] + min(RATE_MARGIN, rate[1] * 0.1)
                    oldest = _scalar(self.cursor, RATE_OLDEST, (queue, now - period))
                    self._slot(queue, (oldest or now) + period, now)
        return skipped

    def _candidates(self, queue: str, now: float, limit: int) -> list[_Candidate]:
        """The best ``limit`` claimable jobs of a queue (keys already at their limit and
        expired jobs left out), as sortable tuples."""
        return [(-priority, run_at, job_id, queue, ckey, climit or 1)
                for job_id, priority, run_at, ckey, climit in self.cursor.execute(
                    CLAIM_CANDIDATES, (queue, now, limit))]

    def _slot(self, queue: str, at: float, now: float) -> None:
        at = max(at, now)
        if self.next_slot is None or at < self.next_slot:
            self.next_slot = at

    def adopt_orphan_queues(self) -> int:
        """Give every queue with queued jobs a row (claims iterate over queue rows)."""
        self.cursor.execute(ADOPT_QUEUES)
        return self.cursor.connection.changes()

    def expire_due(self, now: float, limit: int = 500) -> int:
        """Cancel (reason "expired") pending jobs not started by their ``expires_at``."""
        self.cursor.execute(EXPIRE_DUE, (now, now, limit))
        return self.cursor.connection.changes()

    def promote_due(self, now: float, limit: int = 1000) -> int:
        self.cursor.execute(PROMOTE_DUE, (now, limit))
        return self.cursor.connection.changes()

    def succeed(
        self, job_id: int, attempt: int, result: str, worker: str, started: float, now: float
    ) -> bool:
        """Record a successful attempt; False (and a ``stale`` attempt) if it lost its lease."""
        self.cursor.execute(FINISH_SUCCEEDED, (result, started, now, worker, job_id, attempt))
        if self.cursor.connection.changes() == 1:
            return True
        self._stale(job_id, attempt, worker, started, now, "reported success")
        return False

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
            self.cursor.execute(FINISH_FAILED, (error, crash, now, job_id, attempt))
        else:
            state = State.SCHEDULED.value if retry_at > now else State.QUEUED.value
            self.cursor.execute(
                FINISH_RETRY, (state, max(retry_at, now), error, crash, job_id, attempt)
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
        self.cursor.execute(REQUEUE_INTERRUPTED, (now, job_id, attempt))
        if self.cursor.connection.changes() == 1:
            self._attempt(job_id, attempt, "interrupted", worker, started, now, reason, None)
            return True
        return False

    def unclaim(self, job_id: int, attempt: int) -> bool:
        """Return a claimed job that never reached its worker's hands (it waited in a dead or
        stopped worker's backlog) to queued, taking back the attempt number. Safe because only
        the supervisor that claimed it records its outcomes, and it has let go of it."""
        self.cursor.execute(UNCLAIM, (job_id, attempt))
        return self.cursor.connection.changes() == 1

    def renew(self, leases: Iterable[tuple[int, int]], until: float) -> list[int]:
        """Extend the leases of ``(job_id, attempt)`` pairs; returns the ids that were lost."""
        lost: list[int] = []
        for job_id, attempt in leases:
            self.cursor.execute(RENEW_LEASE, (until, job_id, attempt))
            if self.cursor.connection.changes() != 1:
                lost.append(job_id)
        return lost

    def expired_leases(self, now: float, limit: int = 500) -> list[Row]:
        return list(_dicts(self.cursor.execute(EXPIRED_LEASES, (now, limit))))

    def leases_of(self, prefix: str) -> list[Row]:
        """Running jobs whose ``leased_by`` starts with ``prefix`` (a supervisor's id)."""
        return list(_dicts(self.cursor.execute(RUNNING_LEASES, (_like_prefix(prefix),))))

    def prune(self, before: float, limit: int = 500) -> int:
        self.cursor.execute(PRUNE, (before, limit))
        return self.cursor.connection.changes()

    def heartbeat(
        self, supervisor: str, hostname: str, pid: int, started: float, now: float, queues: str
    ) -> None:
        self.cursor.execute(UPSERT_SUPERVISOR, (supervisor, hostname, pid, started, now, queues))

    def forget_supervisor(self, supervisor: str) -> None:
        self.cursor.execute(DELETE_SUPERVISOR, (supervisor,))

    def forget_supervisors_before(self, before: float) -> None:
        self.cursor.execute(DELETE_OLD_SUPERVISORS, (before,))

    def _attempt(
        self, job_id: int, attempt: int, outcome: str, worker: str | None,
        started: float | None, finished: float, error: str | None, traceback: str | None,
    ) -> None:
        self.cursor.execute(
            RECORD_ATTEMPT, (job_id, attempt, outcome, worker, started, finished, error, traceback)
        )

    def _stale(
        self, job_id: int, attempt: int, worker: str | None, started: float | None,
        finished: float, what: str,
    ) -> None:
        # The job may have been pruned or deleted meanwhile; only record against a live row.
        if self.cursor.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
            return
        self.cursor.execute(
            RECORD_STALE,
            (job_id, attempt, worker, started, finished,
             f"stale: attempt {attempt} {what} after losing its lease; outcome refused", None),
        )


class Store:
    """A litejobs database file. Cheap to make; connections open lazily, one per thread."""

    def __init__(self, path: str | os.PathLike[str], durability: str = "full",
                 busy_timeout: float = 5.0) -> None:
        if durability not in ("full", "fast"):
            raise ValueError(f"durability must be 'full' or 'fast', not {durability!r}")
        raw = os.fspath(path)
        if raw in ("", ":memory:") or raw.startswith("file:"):
            raise ValueError(
                f"database must be a file path, not {raw!r}: workers in other processes "
                "share it"
            )
        self.path = os.path.abspath(raw)
        self.durability = durability
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._ready = False

    # --- connections -------------------------------------------------------------------------

    def connection(self) -> apsw.Connection:
        """This thread's connection, opened on first use (and again after a fork)."""
        local = self._local
        conn: apsw.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        if conn is not None:
            # Inherited across fork: never use or close it here (closing could disturb the
            # parent's locks); keep a reference so it is not finalised either.
            _INHERITED.append(conn)
        conn = self._open()
        local.conn = conn
        local.pid = os.getpid()
        # Queue rows this connection has seen committed; they are never deleted, so inserts
        # skip the INSERT OR IGNORE for them.
        local.queues = set()
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def _open(self) -> apsw.Connection:
        path = self.path
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise StorageError(
                f"the directory of {path} does not exist; create it or point database elsewhere"
            )
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError:
            raise StorageError(
                f"cannot open {path} for writing: permission denied; make it (and its "
                "directory) writable by this user"
            ) from None
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror}") from None
        try:
            head = os.read(fd, 16)
        finally:
            os.close(fd)
        if (head and head != SQLITE_HEADER[: len(head)]) or 0 < len(head) < 16:
            raise StorageError(
                f"{path} is not a SQLite database; litejobs refuses to touch it. Point "
                "database at a new file"
            )
        try:
            conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE,
                                   statementcachesize=128)
        except apsw.Error as exc:
            raise _storage_error(path, exc) from None
        try:
            conn.set_busy_timeout(int(self.busy_timeout * 1000))
            if conn.readonly("main"):
                raise StorageError(
                    f"{path} is read-only for this user; make the file and its directory "
                    "writable, then try again"
                )
            self._check_identity(conn)
            mode = _retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            if mode is None or str(mode[0]).lower() != "wal":
                raise StorageError(
                    f"{path} could not be switched to WAL mode (got {mode}); it must be on a "
                    "local file system that supports shared memory"
                )
            sync = "FULL" if self.durability == "full" else "NORMAL"
            conn.execute(f"PRAGMA synchronous = {sync}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            if not self._ready:
                with self._lock:
                    self._ensure_schema(conn)
                    self._ready = True
        except apsw.Error as exc:
            conn.close()
            raise _storage_error(path, exc) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def inspect(self, now: float) -> Row:
        """Facts for ``litejobs doctor``, read on a read-only connection (nothing is written).

        Call ``verify()`` first: this assumes a litejobs file.
        """
        conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            conn.set_busy_timeout(int(self.busy_timeout * 1000))
            facts: Row = {
                "journal_mode": str(_scalar(conn, "PRAGMA journal_mode")),
                "schema_version": int(_scalar(conn, "PRAGMA user_version")),
                "expired_leases": int(_scalar(conn, COUNT_EXPIRED_LEASES, (now,))),
                "running": int(_scalar(conn, COUNT_RUNNING)),
                "oldest_queued": _scalar(conn, OLDEST_QUEUED),
                "queued": int(_scalar(conn, COUNT_QUEUED)),
                "supervisors": list(_dicts(conn.execute(SELECT_SUPERVISORS))),
            }
        except apsw.Error as exc:
            raise _storage_error(self.path, exc) from None
        finally:
            conn.close()
        return facts

    def verify(self) -> None:
        """Refuse a file litejobs must not use, without writing to it: not SQLite, another
        program's, from a newer litejobs, or failing SQLite's ``quick_check``."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(16)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc.strerror}") from None
        if not head:
            return
        if head != SQLITE_HEADER:
            raise StorageError(
                f"{self.path} is not a SQLite database; litejobs refuses to touch it. Point "
                "database at a new file"
            )
        try:
            conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READONLY)
        except apsw.Error as exc:
            raise _storage_error(self.path, exc) from None
        try:
            conn.set_busy_timeout(int(self.busy_timeout * 1000))
            self._check_identity(conn)
            problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
        except apsw.Error as exc:
            raise _storage_error(self.path, exc) from None
        finally:
            conn.close()
        if problems != ["ok"]:
            raise StorageError(
                f"{self.path} failed SQLite's quick_check ({'; '.join(problems[:3])}); "
                "litejobs will not write to it. Restore it from a backup, or move it aside "
                "and start a new file"
            )

    def _check_identity(self, conn: apsw.Connection) -> None:
        # One statement, so one snapshot: read separately, another process creating the schema
        # in between makes a fresh file look like another program's (id 0, tables present).
        app_id, version, tables = conn.execute(IDENTITY).fetchone() or (0, 0, 0)
        if app_id == 0:
            if tables:
                raise StorageError(
                    f"{self.path} is another program's SQLite database, not a litejobs one; "
                    "litejobs refuses to modify it. Point database at a new file"
                )
        elif app_id != APPLICATION_ID:
            raise StorageError(
                f"{self.path} belongs to another program (application_id {app_id:#x}); "
                "litejobs refuses to modify it. Point database at a new file"
            )
        elif version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path} was written by a newer litejobs (schema {version}; this one "
                f"knows up to {SCHEMA_VERSION}); upgrade litejobs (pip install -U litejobs)"
            )

    def _ensure_schema(self, conn: apsw.Connection) -> None:
        def setup(cur: apsw.Cursor) -> None:
            app_id = int(_scalar(cur, "PRAGMA application_id"))
            version = int(_scalar(cur, "PRAGMA user_version"))
            if app_id == 0:
                cur.execute(SCHEMA)
                cur.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                return
            while version < SCHEMA_VERSION:
                cur.execute(MIGRATIONS[version])
                version += 1
                cur.execute(f"PRAGMA user_version = {version}")

        self._transaction(conn, setup)

    # --- transactions ------------------------------------------------------------------------

    def _transaction(self, conn: apsw.Connection, fn: Callable[[apsw.Cursor], T]) -> T:
        deadline = time.monotonic() + BUSY_DEADLINE
        pause = 0.001
        while True:
            try:
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    value = fn(cur)
                except BaseException:
                    if not conn.get_autocommit():
                        conn.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
                return value
            except apsw.BusyError as exc:
                if not conn.get_autocommit():
                    try:
                        conn.execute("ROLLBACK")
                    except apsw.Error:
                        pass
                if time.monotonic() + pause > deadline:
                    raise _storage_error(self.path, exc) from None
                time.sleep(pause * random.uniform(0.5, 1.0))
                pause = min(pause * 2, 0.1)
            except (apsw.FullError, apsw.ReadOnlyError, apsw.IOError, apsw.CorruptError,
                    apsw.NotADBError, apsw.CantOpenError) as exc:
                raise _storage_error(self.path, exc) from None

    def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retried whole on SQLITE_BUSY."""
        return self._transaction(self.connection(), lambda cur: fn(Tx(cur)))

    def _read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Row]:
        try:
            return list(_dicts(self.connection().execute(sql, params)))
        except apsw.BusyError as exc:
            raise _storage_error(self.path, exc) from None
        except (apsw.IOError, apsw.CorruptError, apsw.NotADBError, apsw.FullError,
                apsw.ReadOnlyError, apsw.CantOpenError) as exc:
            raise _storage_error(self.path, exc) from None

    # --- producers ---------------------------------------------------------------------------

    def insert_jobs(self, jobs: Sequence[NewJob], now: float) -> list[Row]:
        """Insert ``jobs`` in one transaction; returns each one's row, in order.

        A job with a key whose live twin (same task and key, not failed or cancelled, younger
        than its ``unique_for``) exists returns that twin instead; the write lock makes this
        exact across processes.
        """

        conn = self.connection()
        known: set[str] = self._local.queues

        def insert(cur: apsw.Cursor) -> tuple[list[Row], set[str]]:
            # A copy per attempt: only a committed transaction's queues are known to exist.
            seen = set(known)
            return [Tx(cur, seen).insert(job, now) for job in jobs], seen

        rows, seen = self._transaction(conn, insert)
        if len(seen) > len(known):
            self._local.queues = seen
        return rows

    def get_job(self, job_id: int) -> Row | None:
        rows = self._read(SELECT_JOB, (job_id,))
        return rows[0] if rows else None

    def list_jobs(self, state: str | None = None, task: str | None = None,
                  queue: str | None = None, limit: int = 100) -> list[Row]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("state", state), ("task", task), ("queue", queue)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit)
        return self._read(f"SELECT {JOB_COLUMNS} FROM jobs {where} ORDER BY id DESC LIMIT ?",
                          params)

    def attempts(self, job_id: int) -> list[Attempt]:
        """Every attempt of a job, oldest first; the running or successful one is read from
        the job row."""
        rows = self._read(SELECT_ATTEMPTS, (job_id,))
        out = [Attempt(r["attempt"], r["outcome"], r["started_at"], r["finished_at"], r["error"],
                       r["traceback"], r["worker"]) for r in rows]
        job = self.get_job(job_id)
        last = job["state"] if job is not None else None
        if job is not None and last in ("running", "succeeded") and (
                not out or out[-1].attempt < job["attempt"]):
            out.append(Attempt(job["attempt"], last, job["started_at"], job["finished_at"],
                               None, None, job["leased_by"]))
        return out

    def cancel(self, job_id: int, reason: str, now: float) -> bool:
        """Cancel a pending or running job; False when it is already terminal or missing."""

        def cancel(cur: apsw.Cursor) -> bool:
            row = cur.execute(SELECT_FOR_CANCEL, (job_id,)).fetchone()
            if row is None:
                return False
            was, attempt, started, leased_by = row
            cur.execute(CANCEL_JOB, (reason, now, job_id))
            if cur.connection.changes() != 1:
                return False
            if was == State.RUNNING.value:
                cur.execute(RECORD_ATTEMPT, (job_id, attempt, "interrupted", leased_by, started,
                                             now, reason, None))
            return True

        return self._transaction(self.connection(), cancel)

    def retry(self, job_id: int, retries: int, now: float) -> bool:
        """Put a failed or cancelled job back to queued with ``retries`` more retries."""

        def retry(cur: apsw.Cursor) -> bool:
            cur.execute(RETRY_JOB, (now, retries + 1, job_id))
            return cur.connection.changes() == 1

        return self._transaction(self.connection(), retry)

    def next_scheduled(self) -> float | None:
        value = next(iter(self._read(NEXT_SCHEDULED)[0].values()))
        return None if value is None else float(value)

    def held_by(self, prefix: str) -> dict[int, int]:
        """``{job_id: attempt}`` of running jobs leased by ids starting with ``prefix``."""
        # _read: the supervisor's loop survives only StorageError, never a raw apsw error
        rows = self._read(HELD_BY, (_like_prefix(prefix),))
        return {int(r["id"]): int(r["attempt"]) for r in rows}

    def supervisors(self) -> list[Row]:
        return self._read(SELECT_SUPERVISORS)

    def cron_entries(self) -> list[Row]:
        """Each cron entry's stored state, with the state of the last job it fired."""
        return self._read(SELECT_CRON_ENTRIES)

    def stats(self) -> dict[str, Any]:
        states = {s.value: 0 for s in State}
        queues: dict[str, dict[str, int]] = {}
        for name, _ in self.queue_list():
            queues[name] = {s.value: 0 for s in State}
        # _read: a corrupt or locked file surfaces as StorageError, not a raw apsw error
        for row in self._read(COUNT_BY_QUEUE_STATE):
            queue, state, count = row.values()
            states[state] += count
            queues.setdefault(queue, {s.value: 0 for s in State})[state] = count
        return {"states": states, "queues": queues}

    def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue (persisted: every supervisor on the file obeys it)."""
        self._transaction(self.connection(),
                          lambda cur: cur.execute(SET_PAUSED, (queue, int(paused))))

    # --- bulk operations ---------------------------------------------------------------------

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

    def retry_many(self, ids: Sequence[int], retries: int, now: float) -> int:
        """Manual retry of many failed or cancelled jobs, in one short transaction."""

        def retry(cur: apsw.Cursor) -> int:
            n = 0
            for job_id in ids:
                cur.execute(RETRY_JOB, (now, retries + 1, job_id))
                n += cur.connection.changes()
            return n

        return self._transaction(self.connection(), retry)

    def purge(self, ids: Sequence[int]) -> int:
        """Delete terminal jobs (and their attempts) by id; others are left alone."""

        def purge(cur: apsw.Cursor) -> int:
            n = 0
            for job_id in ids:
                cur.execute("DELETE FROM jobs WHERE id = ? AND state IN "
                            "('succeeded', 'failed', 'cancelled')", (job_id,))
                n += cur.connection.changes()
            return n

        return self._transaction(self.connection(), purge)

    # --- facts for `explain` ------------------------------------------------------------------

    def queue_paused(self, queue: str) -> bool:
        rows = self._read(SELECT_PAUSED, (queue,))
        return bool(rows and rows[0]["paused"])

    def running_in_queue(self, queue: str, limit: int = 5) -> tuple[int, list[int]]:
        count = int(next(iter(self._read(COUNT_RUNNING_IN_QUEUE, (queue,))[0].values())))
        ids = [int(r["id"]) for r in self._read(RUNNING_IN_QUEUE, (queue, limit))]
        return count, ids

    def running_with_key(self, key: str) -> list[int]:
        return [int(r["id"]) for r in self._read(RUNNING_WITH_KEY, (key,))]

    def rate_window(self, queue: str, since: float) -> tuple[int, float | None]:
        row = self._read(RATE_WINDOW, (queue, since))[0]
        values = list(row.values())
        return int(values[0]), values[1]

    def ahead_of(self, job: Row) -> int:
        """How many queued jobs of the job's queue a claim takes before it."""
        rows = self._read(AHEAD_IN_QUEUE, {"queue": job["queue"], "priority": job["priority"],
                                           "run_at": job["run_at"], "id": job["id"]})
        return int(next(iter(rows[0].values())))

    def queue_list(self) -> list[tuple[str, bool]]:
        return [(str(r["name"]), bool(r["paused"])) for r in self._read(SELECT_QUEUES)]

    # --- upkeep ------------------------------------------------------------------------------

    def checkpoint(self, truncate: bool = False) -> tuple[int, int]:
        """Checkpoint the WAL (PASSIVE, or TRUNCATE to shrink it); returns (log, checkpointed)."""
        mode = apsw.SQLITE_CHECKPOINT_TRUNCATE if truncate else apsw.SQLITE_CHECKPOINT_PASSIVE
        try:
            log, done = self.connection().wal_checkpoint(mode=mode)
        except apsw.BusyError:
            return (-1, -1)
        except apsw.Error as exc:
            # A full disk fails the checkpoint (the database file must grow): a StorageError,
            # which the supervisor logs and retries, not a crash.
            raise _storage_error(self.path, exc) from None
        return int(log), int(done)

    def wal_size(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def quick_check(self) -> list[str]:
        """SQLite's ``quick_check``: ``[]`` when the file is sound, else the problems found."""
        problems = [str(r[0]) for r in self.connection().execute("PRAGMA quick_check")]
        return [] if problems == ["ok"] else problems


_INHERITED: list[apsw.Connection] = []
