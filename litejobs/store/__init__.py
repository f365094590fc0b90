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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import apsw

from litejobs.bell import bell_dir
from litejobs.config import check_durability, database_path
from litejobs.errors import StorageError, StorageFull
from litejobs.job import Attempt, State
from litejobs.store import sql
from litejobs.store.schema import (
    APPLICATION_ID,
    IDENTITY,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    SQLITE_HEADER,
)
from litejobs.store.turns import Turns
from litejobs.store.tx import (
    RATE_MARGIN,
    NewJob,
    NewJobs,
    QueueLimits,
    Row,
    Tx,
    _dicts,
    _id_list,
    _like_prefix,
    _scalar,
    sent_order,
)

__all__ = ["RATE_MARGIN", "SCHEMA_VERSION", "NewJob", "NewJobs", "QueueLimits", "Row", "Store",
           "Tx", "sent_order"]

#: How long a write keeps retrying SQLITE_BUSY before it gives up with a StorageError.
BUSY_DEADLINE = 60.0
#: First and longest sleep between two tries of a locked file (seconds; see _Waiter).
BUSY_PAUSE = 0.0001
BUSY_PAUSE_MAX = 0.002

T = TypeVar("T")


class _Waiter:
    """A connection's busy handler: what a writer does while another holds the write lock.

    SQLite's own handler sleeps 1, 2, 5, 10 … 100 ms between tries. Under steady contention
    (several producers committing, each holding the lock well under a millisecond) a waiter
    that sleeps 25-100 ms keeps losing the lock to ones that just arrived: single enqueues
    took up to a second while the median was 0.2 ms. So tries come every few hundred
    microseconds, and a writer that has waited 10 ms goes first (see turns.py).
    """

    def __init__(self, timeout: float, directory: str | None) -> None:
        self.timeout = timeout
        self.directory = directory  # where the turns file lives; None: no turns (reads)
        self.turns: Turns | None = None
        self.writing = False
        self.started = 0.0

    def __call__(self, tries: int) -> bool:
        now = time.monotonic()
        if tries == 0:
            self.started = now
        elif now - self.started >= self.timeout:
            return False  # SQLITE_BUSY: the caller's retry loop or error takes over
        if self.writing:
            if self.turns is None and self.directory is not None:
                # made on the first contention only: an uncontended file gets nothing beside it
                self.turns = Turns.open(self.directory)
                self.directory = None
            if self.turns is not None and self.turns.wait(self.started + self.timeout):
                # starving, and no other goes first: take the lock the moment it is free
                if tries < 2000:
                    os.sched_yield()
                else:
                    time.sleep(BUSY_PAUSE * random.uniform(0.5, 1.0))
                return True
        pause = BUSY_PAUSE_MAX if tries > 10 else min(BUSY_PAUSE_MAX, BUSY_PAUSE * 1.5**tries)
        time.sleep(pause * random.uniform(0.5, 1.0))
        return True

    def begin(self) -> None:
        """A write transaction is about to ask for the lock: not before a starving writer."""
        self.writing = True
        turns = self.turns
        if turns is not None and turns.someone_starving():
            turns.wait(time.monotonic() + self.timeout)

    def end(self) -> None:
        """The write has the lock (or gave up): out of the line."""
        self.writing = False
        if self.turns is not None:
            self.turns.leave()


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


#: I/O errors SQLite reports when a file could not grow: making the -shm on a full disk is
#: SQLITE_IOERR_SHMSIZE, a bare "disk I/O error", not SQLITE_FULL.
_GROWTH_ERRORS = frozenset({apsw.SQLITE_IOERR_SHMSIZE, apsw.SQLITE_IOERR_SHMMAP,
                            apsw.SQLITE_IOERR_SHMOPEN, apsw.SQLITE_IOERR_WRITE,
                            apsw.SQLITE_IOERR_TRUNCATE, apsw.SQLITE_IOERR_FSYNC})
#: Below this much free space, a growth error means the disk is full.
FULL_BELOW = 1024 * 1024


def _disk_full(path: str) -> bool:
    """Whether the file system holding ``path`` is (nearly) out of space or inodes."""
    try:
        st = os.statvfs(os.path.dirname(path))
    except OSError:
        return False
    # root may use the blocks reserved for it, others may not
    free = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return free * st.f_frsize < FULL_BELOW or (st.f_files > 0 and st.f_favail == 0)


def _file_id(path: str) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``; None when nothing is there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _storage_error(path: str, exc: apsw.Error) -> StorageError:
    if isinstance(exc, apsw.FullError) or (
            isinstance(exc, apsw.IOError)
            and getattr(exc, "extendedresult", None) in _GROWTH_ERRORS
            and _disk_full(path)):
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


class Store:
    """A litejobs database file. Cheap to make; connections open lazily, one per thread."""

    def __init__(self, path: str | os.PathLike[str], durability: str = "full",
                 busy_timeout: float = 5.0, cache_mb: int | None = None) -> None:
        self.durability = check_durability(durability)
        self.path = database_path(path)
        self.busy_timeout = busy_timeout
        self.cache_mb = cache_mb
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
        conn, local.waiter = self._open()
        local.conn = conn
        local.pid = os.getpid()
        local.file_id = _file_id(self.path)
        # Queue rows this connection has seen committed; they are never deleted, so inserts
        # skip the INSERT OR IGNORE for them.
        local.queues = set()
        return conn

    def file_changed(self) -> str | None:
        """None while the path still names the file this thread's connection opened; else
        what happened to it ("deleted" or "replaced by another file"), in a sentence.

        One ``stat``: cheap enough to call every few seconds. A connection keeps using a file
        deleted or replaced under it, while new producers create and use a new file at the
        path; the supervisor calls this to notice and stop serving the orphan.
        """
        opened: tuple[int, int] | None = getattr(self._local, "file_id", None)
        if opened is None or self._local.pid != os.getpid():
            return None  # nothing opened here yet: whatever is at the path is what we'll use
        now = _file_id(self.path)
        if now == opened:
            return None
        if now is None:
            return (f"{self.path} was deleted after this process opened it; new jobs go to a "
                    "new file at that path, which this process does not see")
        return (f"{self.path} was replaced by another file after this process opened it; new "
                "jobs go to that file, which this process does not see")

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None
        self._local.file_id = None

    def _open(self) -> tuple[apsw.Connection, _Waiter]:
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
            waiter = _Waiter(self.busy_timeout, bell_dir(path))
            conn.set_busy_handler(waiter)
            if conn.readonly("main"):
                raise StorageError(
                    f"{path} is read-only for this user; make the file and its directory "
                    "writable, then try again"
                )
            current = self._check_identity(conn)
            mode = _retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            if mode is None or str(mode[0]).lower() != "wal":
                raise StorageError(
                    f"{path} could not be switched to WAL mode (got {mode}); it must be on a "
                    "local file system that supports shared memory"
                )
            sync = "FULL" if self.durability == "full" else "NORMAL"
            conn.execute(f"PRAGMA synchronous = {sync}")
            if self.cache_mb is not None:
                conn.execute(f"PRAGMA cache_size = {-1024 * int(self.cache_mb)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            if not self._ready:
                with self._lock:
                    # A current file is opened without the write lock: a web worker starting
                    # while another process holds a long write does not wait for it.
                    if not current:
                        self._ensure_schema(conn, waiter)
                    self._ready = True
        except apsw.Error as exc:
            conn.close()
            raise _storage_error(path, exc) from None
        except BaseException:
            conn.close()
            raise
        return conn, waiter

    def inspect(self, now: float) -> Row:
        """Facts for ``litejobs doctor``, read on a read-only connection (nothing is written).

        Call ``verify()`` first: this assumes a litejobs file.
        """
        conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            conn.set_busy_handler(_Waiter(self.busy_timeout, None))
            facts: Row = {
                "journal_mode": str(_scalar(conn, "PRAGMA journal_mode")),
                "schema_version": int(_scalar(conn, "PRAGMA user_version")),
                "expired_leases": int(_scalar(conn, sql.COUNT_EXPIRED_LEASES, (now,))),
                "running": int(_scalar(conn, sql.COUNT_RUNNING)),
                "oldest_queued": _scalar(conn, sql.OLDEST_QUEUED),
                "queued": int(_scalar(conn, sql.COUNT_QUEUED)),
                "supervisors": list(_dicts(conn.execute(sql.SELECT_SUPERVISORS))),
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
            conn.set_busy_handler(_Waiter(self.busy_timeout, None))
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

    def _check_identity(self, conn: apsw.Connection) -> bool:
        """Refuse a file that is not ours (or from a newer litejobs); True when its schema is
        already current, so opening it needs no write."""
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
        return app_id == APPLICATION_ID and version == SCHEMA_VERSION

    def _ensure_schema(self, conn: apsw.Connection, waiter: _Waiter) -> None:
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

        self._transaction(conn, setup, waiter)

    # --- transactions ------------------------------------------------------------------------

    def _transaction(self, conn: apsw.Connection, fn: Callable[[apsw.Cursor], T],
                     waiter: _Waiter | None = None) -> T:
        if waiter is None:
            waiter = self._local.waiter  # conn is this thread's connection
        deadline = time.monotonic() + BUSY_DEADLINE
        pause = 0.001
        while True:
            try:
                cur = conn.cursor()
                waiter.begin()
                try:
                    cur.execute("BEGIN IMMEDIATE")
                finally:
                    waiter.end()
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

    def insert_jobs(self, jobs: Sequence[NewJob | NewJobs], now: float,
                    ) -> list[Mapping[str, Any]]:
        """Insert ``jobs`` in one transaction; returns each one's row, in order.

        A job with a key whose live twin (same task and key, not failed or cancelled, younger
        than its ``unique_for``) exists returns that twin instead; the write lock makes this
        exact across processes.
        """

        conn = self.connection()
        known: set[str] = self._local.queues

        def insert(cur: apsw.Cursor) -> tuple[list[Mapping[str, Any]], set[str]]:
            # A copy per attempt: only a committed transaction's queues are known to exist.
            seen = set(known)
            return Tx(cur, seen).insert_many(jobs, now), seen

        rows, seen = self._transaction(conn, insert)
        if len(seen) > len(known):
            self._local.queues = seen
        return rows

    def insert_job(self, job: NewJob, now: float) -> Mapping[str, Any]:
        """``insert_jobs`` for one job (the common enqueue, kept short)."""
        conn = self.connection()
        known: set[str] = self._local.queues  # (set by connection())
        if job.key is not None or job.queue not in known:
            return self.insert_jobs([job], now)[0]
        return self._transaction(conn, lambda cur: Tx(cur, known).insert(job, now))

    def get_job(self, job_id: int) -> Row | None:
        rows = self._read(sql.SELECT_JOB, (job_id,))
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
        return self._read(f"SELECT {sql.JOB_COLUMNS} FROM jobs {where} ORDER BY id DESC LIMIT ?",
                          params)

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

    def cancel(self, job_id: int, reason: str, now: float) -> bool:
        """Cancel a pending or running job; False when it is already terminal or missing."""

        def cancel(cur: apsw.Cursor) -> bool:
            row = cur.execute(sql.SELECT_FOR_CANCEL, (job_id,)).fetchone()
            if row is None:
                return False
            was, attempt, started, leased_by = row
            cur.execute(sql.CANCEL_JOB, (reason, now, job_id))
            if cur.connection.changes() != 1:
                return False
            if was == State.RUNNING.value:
                cur.execute(sql.RECORD_ATTEMPT, (job_id, attempt, "interrupted", leased_by, started,
                                             now, reason, None))
            return True

        return self._transaction(self.connection(), cancel)

    def cancel_many(self, ids: Sequence[int], reason: str, now: float) -> int:
        """``cancel`` for many jobs in one short transaction (give it a page of ids, e.g. a
        thousand, not the whole table); returns how many were cancelled. Running ones keep
        an "interrupted" attempt; ring the bell with ``c`` afterwards so their supervisors
        stop them."""
        id_list = _id_list(ids)

        def cancel(cur: apsw.Cursor) -> int:
            cur.execute(sql.RECORD_CANCELLED_ATTEMPTS, (now, reason, id_list))
            cur.execute(sql.CANCEL_JOBS, (reason, now, id_list))
            return cur.connection.changes()

        return self._transaction(self.connection(), cancel)

    def retry(self, job_id: int, retries: int, now: float) -> bool:
        """Put a failed or cancelled job back to queued with ``retries`` more retries."""

        return self.retry_many([job_id], retries, now) == 1

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

    def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue (persisted: every supervisor on the file obeys it)."""
        self._transaction(self.connection(),
                          lambda cur: cur.execute(sql.SET_PAUSED, (queue, int(paused))))

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
            cur.execute(sql.RETRY_JOBS, (now, retries + 1, _id_list(ids)))
            return cur.connection.changes()

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

    def ahead_of(self, job: Row) -> int:
        """How many queued jobs of the job's queue a claim takes before it."""
        rows = self._read(sql.AHEAD_IN_QUEUE, {"queue": job["queue"], "priority": job["priority"],
                                           "run_at": job["run_at"], "id": job["id"]})
        return int(next(iter(rows[0].values())))

    def queue_list(self) -> list[tuple[str, bool]]:
        return [(str(r["name"]), bool(r["paused"])) for r in self._read(sql.SELECT_QUEUES)]

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
