"""A litejobs database file, its connections and transactions: what every store operation
runs on (the operations themselves live in reads, admin, maintenance and the package's Store).

Connections are per process and per thread: a connection never crosses a ``fork`` (a child that
inherits one leaves it alone and opens its own).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import apsw

from litejobs.bell import bell_dir
from litejobs.config import check_durability, database_path
from litejobs.errors import StorageError
from litejobs.store.busy import Waiter, retry_busy
from litejobs.store.failures import (
    STORAGE_ERRORS,
    file_id,
    replayable_wal,
    stale_wal,
    storage_error,
)
from litejobs.store.header import header_fd
from litejobs.store.migrations import MIGRATIONS
from litejobs.store.rows import Row, _dicts, _scalar
from litejobs.store.schema import (
    APPLICATION_ID,
    IDENTITY,
    SCHEMA,
    SCHEMA_VERSION,
    SQLITE_HEADER,
)
from litejobs.store.tx import Tx

__all__ = ["Connections"]

T = TypeVar("T")


class Connections:
    """A litejobs database file: its connections (lazily, one per thread and process), their
    transactions and reads. Store adds the operations, by caller."""

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
        local.file_id = file_id(self.path)
        # Queue rows this connection has seen committed; they are never deleted, so inserts
        # skip the INSERT OR IGNORE for them.
        local.queues = set()
        return conn

    def _read_only(self) -> apsw.Connection:
        """A connection of its own that cannot write (nothing is created, written or
        upgraded), waiting out a locked file as the store's do; the caller closes it.
        StorageError when the file cannot be opened."""
        try:
            conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READONLY)
        except apsw.Error as exc:
            raise storage_error(self.path, exc) from None
        conn.set_busy_handler(Waiter(self.busy_timeout, None))
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
        now = file_id(self.path)
        if now == opened:
            return None
        if now is None:
            return (f"{self.path} was deleted after this process opened it; an enqueue now "
                    "creates a new file there, which this process does not see")
        return (f"{self.path} was replaced by another file after this process opened it; new "
                "jobs go to that file, which this process does not see")

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None
        self._local.file_id = None

    def _open(self) -> tuple[apsw.Connection, Waiter]:
        path = self.path
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise StorageError(
                f"the directory of {path} does not exist; create it or point database elsewhere"
            )
        # The one stat a current file's open adds; before the file is read (replayable_wal).
        wal = replayable_wal(path)
        try:
            # Beside a WAL a missing file is not created: that WAL is another file's.
            fd = header_fd(path, os.O_RDONLY | (0 if wal else os.O_CREAT))
            if not os.access(path, os.W_OK):
                # (the descriptor is read-only: one open for writing would keep a read-only
                # remount of its file system from happening while this process runs)
                if os.statvfs(path).f_flag & os.ST_RDONLY:
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS))
                raise PermissionError
        except FileNotFoundError:
            raise StorageError(
                stale_wal(path, None, wal) or f"cannot open {path}: its directory vanished"
            ) from None
        except PermissionError:
            raise StorageError(
                f"cannot open {path} for writing: permission denied; make it (and its "
                "directory) writable by this user"
            ) from None
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror}") from None
        head = os.pread(fd, 100, 0)
        problem = stale_wal(path, head, wal)
        if problem is not None:
            raise StorageError(problem)
        head = head[:16]
        if (head and head != SQLITE_HEADER[: len(head)]) or 0 < len(head) < 16:
            raise StorageError(
                f"{path} is not a SQLite database; litejobs refuses to touch it. Point "
                "database at a new file"
            )
        try:
            conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE,
                                   statementcachesize=128)
        except apsw.Error as exc:
            raise storage_error(path, exc) from None
        try:
            waiter = Waiter(self.busy_timeout, bell_dir(path))
            conn.set_busy_handler(waiter)
            if conn.readonly("main"):
                raise StorageError(
                    f"{path} is read-only for this user; make the file and its directory "
                    "writable, then try again"
                )
            current = self._check_identity(conn)
            mode = retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
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
            raise storage_error(path, exc) from None
        except BaseException:
            conn.close()
            raise
        return conn, waiter

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

    def _ensure_schema(self, conn: apsw.Connection, waiter: Waiter) -> None:
        def setup(cur: apsw.Cursor) -> None:
            app_id = int(_scalar(cur, "PRAGMA application_id"))
            version = int(_scalar(cur, "PRAGMA user_version"))
            if app_id == 0:
                cur.execute(SCHEMA)
                cur.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                return
            while version < SCHEMA_VERSION:
                step = MIGRATIONS[version]
                if isinstance(step, str):
                    cur.execute(step)
                else:
                    step(cur)
                version += 1
                cur.execute(f"PRAGMA user_version = {version}")

        self._transaction(conn, setup, waiter)

    # --- transactions ------------------------------------------------------------------------

    def _transaction(self, conn: apsw.Connection, fn: Callable[[apsw.Cursor], T],
                     waiter: Waiter | None = None) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction on ``conn``, retried whole on
        SQLITE_BUSY (retry_busy); an error about the file becomes a StorageError."""
        if waiter is None:
            waiter = self._local.waiter  # conn is this thread's connection
        begin = waiter.begin
        end = waiter.end

        def once() -> T:
            cur = conn.cursor()
            begin()
            try:
                cur.execute("BEGIN IMMEDIATE")
            finally:
                end()
            try:
                value = fn(cur)
                cur.execute("COMMIT")
            except BaseException:
                if not conn.get_autocommit():
                    with contextlib.suppress(apsw.Error):  # the first error is the one to tell
                        conn.execute("ROLLBACK")
                raise
            return value

        try:
            return retry_busy(once)
        except STORAGE_ERRORS as exc:
            raise storage_error(self.path, exc) from None

    def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retried whole on SQLITE_BUSY."""
        return self._transaction(self.connection(), lambda cur: fn(Tx(cur)))

    def _read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Row]:
        try:
            return list(_dicts(self.connection().execute(sql, params)))
        except STORAGE_ERRORS as exc:
            raise storage_error(self.path, exc) from None


#: Connections inherited across a fork: kept, never used or closed (see Connections.connection).
_INHERITED: list[apsw.Connection] = []
