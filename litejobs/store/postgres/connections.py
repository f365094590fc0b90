"""A PostgreSQL database as a litejobs store: its connection pool (one per process, opened on
first use), its transactions, its schema, and its errors as one line.

A pool never crosses a ``fork``: a child that inherits one leaves it alone (psycopg does not
close a connection in a process that did not open it) and opens its own.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from litejobs.config import redacted_url
from litejobs.errors import StorageError, StorageFull
from litejobs.store.postgres import sql
from litejobs.store.postgres.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from litejobs.store.rows import Row

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["PgConnections", "driver", "redacted"]

T = TypeVar("T")

#: How often a transaction that lost a deadlock or a serialization race is run again whole.
RETRIES = 8

#: Pools inherited across a fork: kept (never used, closed or finalised) in the child.
_INHERITED: list[object] = []


def driver() -> tuple[Any, Any]:
    """psycopg and psycopg_pool, or an ImportError in one line saying what to install."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise ImportError("the PostgreSQL store needs psycopg 3 and psycopg_pool: "
                          "pip install 'litejobs[postgres]'") from None
    return psycopg, psycopg_pool


#: ``url`` without its password, for messages.
redacted = redacted_url

#: How long the server lets a connection sit idle in the middle of a transaction before it
#: ends the session (``idle_in_transaction_session_timeout``): the transaction rolls back and
#: its locks (a limited queue's row, the figures' rows) go. A client goes silent mid-way only
#: when its host is frozen, paused or cut off (litejobs sends a transaction's statements back
#: to back), and until then every supervisor that needs those locks waits: its renewals
#: with it, so live hosts' leases would run out. 1.5 s keeps that wait under what a renewal
#: every lease/3 can absorb down to a 3 s lease, and is a thousand times the gap between a
#: live transaction's statements, so a starved but running client is not cut off. One
#: constant, not one from the lease: it bounds how long a frozen host stalls the others,
#: which a longer lease makes no more acceptable.
IDLE_IN_TRANSACTION_MS = 1500


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Every pooled connection: a transaction left silent loses its locks (set here, not in
    the URL's ``options``, which a user's own ``-csearch_path=...`` lives in)."""
    conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
    conn.commit()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PgConnections:
    """A PostgreSQL database: a connection pool per process (opened lazily), transactions
    retried whole on a deadlock or serialization failure, reads; errors about the server as
    StorageError."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4,
                 connect_timeout: float = 10.0) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"a PostgreSQL store takes a postgresql:// URL, not {url!r}")
        driver()
        self.url = url
        #: Where the jobs are, for messages (the password left out).
        self.path = redacted(url)
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._ready = False

    # --- the pool --------------------------------------------------------------------------------

    def pool(self) -> psycopg_pool.ConnectionPool[Any]:
        """This process's pool, opened on first use (and again after a fork), with the schema
        made or migrated once per store."""
        pool = self._pool
        if pool is None or self._pid != os.getpid():
            pool = self._open_pool()
        if not self._ready:
            self._run(pool, self._ensure_schema)
            self._ready = True
        return pool

    def _open_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                return self._pool
            if self._pool is not None:
                _INHERITED.append(self._pool)
            _, pools = driver()
            from psycopg.rows import dict_row

            pool: psycopg_pool.ConnectionPool[Any] = pools.ConnectionPool(
                self.url, min_size=self.min_size, max_size=self.max_size, open=False,
                timeout=self.connect_timeout, name="litejobs",
                kwargs={"autocommit": False, "row_factory": dict_row}, configure=_configure)
            pool.open(wait=False)
            self._pool, self._pid = pool, os.getpid()
            return pool

    def close(self) -> None:
        """Close this process's pool (a later use opens a new one)."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            pool.close()
        self._pool = None

    # --- transactions and reads ------------------------------------------------------------------

    def _transaction(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn`` in one transaction on a pooled connection; run it again whole (a few
        times, after a short jittered pause) when it lost a deadlock or a serialization race.
        A lost or refused connection becomes StorageError; the pool replaces it."""
        return self._run(self.pool(), fn)

    def _statement(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``_transaction`` for ``fn`` that runs one statement: in autocommit, the statement
        is its own transaction, one round trip instead of three (BEGIN, it, COMMIT)."""
        return self._run(self.pool(), fn, autocommit=True)

    def _run(self, pool: psycopg_pool.ConnectionPool[Any],
             fn: Callable[[psycopg.Connection[Any]], T], autocommit: bool = False) -> T:
        psycopg, psycopg_pool = driver()
        errors = psycopg.errors
        for attempt in range(RETRIES):
            committing = False  # fn's work is done: a drop from here may follow the commit
            try:
                with pool.connection() as conn:
                    if not autocommit:
                        with conn.transaction():
                            out = fn(conn)
                            committing = True  # leaving the block sends COMMIT
                        return out
                    conn.autocommit = True
                    committing = True  # the statement commits as it runs
                    try:
                        return fn(conn)
                    finally:
                        with contextlib.suppress(psycopg.Error):  # broken: the pool drops it
                            conn.autocommit = False
            except (errors.DeadlockDetected, errors.SerializationFailure) as exc:
                if attempt == RETRIES - 1:
                    raise StorageError(
                        f"PostgreSQL at {self.path}: the transaction lost a deadlock or "
                        f"serialization race {RETRIES} times ({_first_line(exc)}); nothing "
                        "of this call was committed. Try again") from None
                time.sleep(random.uniform(0, 0.005 * 2 ** attempt))
            except psycopg_pool.PoolTimeout:
                raise self._no_connection() from None
            except errors.IdleInTransactionSessionTimeout:
                pool.check()
                raise StorageError(
                    f"PostgreSQL at {self.path} ended this process's session: it sat silent "
                    f"mid-transaction for over {IDLE_IN_TRANSACTION_MS / 1000:g} s (this host "
                    "frozen, paused or starved?) and its locks were freed for the other "
                    "hosts; nothing of this call was committed. The next call reconnects"
                ) from None
            except psycopg.OperationalError as exc:
                raise self._storage_error(pool, exc, committing) from None
        raise AssertionError("unreachable")

    def _no_connection(self) -> StorageError:
        """Why the pool gave no connection in time, as one line: the pool's own error does
        not say, so one direct attempt asks the server."""
        psycopg, _ = driver()
        try:
            psycopg.connect(self.url, connect_timeout=max(2, int(self.connect_timeout))).close()
        except psycopg.Error as exc:
            return StorageError(
                f"cannot connect to PostgreSQL at {self.path} ({_first_line(exc)}); check that "
                "the server is up, reachable from here, and that the URL is right")
        return StorageError(
            f"no connection to PostgreSQL at {self.path} within {self.connect_timeout:g} s: "
            f"this process's {self.max_size} connections all stayed busy")

    def _storage_error(self, pool: psycopg_pool.ConnectionPool[Any],
                       exc: Exception, committing: bool = False) -> StorageError:
        """An error about the server (not a bug of ours) as one line. ``committing``: the
        call's work was done and its commit sent; a connection lost then leaves unknown
        whether the server committed it (it may have, its answer lost on the way)."""
        psycopg, _ = driver()
        errors = psycopg.errors
        what = _first_line(exc)
        if isinstance(exc, errors.DiskFull | errors.OutOfMemory | errors.TooManyConnections):
            cls = StorageFull if isinstance(exc, errors.DiskFull) else StorageError
            return cls(f"PostgreSQL at {self.path} is out of resources ({what}); nothing of "
                       "this call was committed. Free them on the server and try again")
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None or sqlstate.startswith(("08", "57P")):
            pool.check()  # drop the other connections the same outage broke
            if committing:
                return StorageError(
                    f"lost the connection to PostgreSQL at {self.path} ({what}) while this call "
                    "committed: it may or may not have been committed. The next call "
                    "reconnects; before doing it again, check what it wrote (an enqueue: give "
                    "it a key=, so that enqueueing it again makes no second job)")
            return StorageError(
                f"lost the connection to PostgreSQL at {self.path} ({what}); nothing of "
                "this call was committed. The next call reconnects")
        return StorageError(f"PostgreSQL at {self.path} refused the call ({what}); nothing "
                            "of it was committed")

    def _read(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        def read(conn: psycopg.Connection[Any]) -> list[Row]:
            return list(conn.execute(statement, params).fetchall())

        return self._transaction(read)

    # --- schema ----------------------------------------------------------------------------------

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Create the schema, or migrate it, under a lock only litejobs takes: two processes
        opening a new database at once do it once. Refuse a schema that is not ours or is
        newer than this litejobs."""
        conn.execute(sql.SCHEMA_LOCK)
        where = conn.execute("SELECT current_schema() AS s").fetchone()
        if where is None or where["s"] is None:
            raise StorageError(
                f"PostgreSQL at {self.path} has no schema to write to (search_path names none "
                "that exists); create one or fix the search_path")
        foreign = conn.execute(sql.FOREIGN_JOBS).fetchone()
        conn.execute(sql.META)
        row = conn.execute(sql.SELECT_VERSION).fetchone()
        if row is None:
            if foreign is not None and foreign["present"]:
                raise StorageError(
                    f"schema {where['s']} of {self.path} already has a table named jobs that "
                    "is not litejobs's; litejobs refuses to touch it. Use another database or "
                    "schema")
            conn.execute(SCHEMA)
            conn.execute(sql.SET_VERSION, (str(SCHEMA_VERSION),))
            return
        version = int(row["value"])
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path} was written by a newer litejobs (PostgreSQL schema {version}; "
                f"this one knows up to {SCHEMA_VERSION}); upgrade litejobs "
                "(pip install -U litejobs)")
        while version < SCHEMA_VERSION:
            conn.execute(MIGRATIONS[version])
            version += 1
            conn.execute(sql.SET_VERSION, (str(version),))
