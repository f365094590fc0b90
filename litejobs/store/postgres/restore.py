"""Writing a whole store into an empty PostgreSQL schema, for ``litejobs migrate-store``: in
the caller's one transaction, table by table with ``COPY ... FROM STDIN`` (several times the
rows a second of batched INSERTs, see docs/postgres.md), then the identity sequences set past
the top ids, then the checks read back before the commit.

COPY writes the ids it is given into ``GENERATED ALWAYS`` identity columns (as INSERT's
``OVERRIDING SYSTEM VALUE`` would), so every job keeps its id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.errors import StorageError
from litejobs.store.postgres.connections import driver, redacted
from litejobs.store.postgres.flowkeys import FLOW_UNTIL
from litejobs.store.postgres.sql import NOW

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgRestore", "peek", "reachable"]

SCHEMA_TABLES = """
SELECT table_name AS name FROM information_schema.tables
WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
  AND table_name != 'litejobs_meta'
ORDER BY table_name
"""
TABLE_COLUMNS = """
SELECT column_name AS name, data_type AS type FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position
"""
HAS_JOBS = "SELECT to_regclass('jobs') IS NOT NULL AS present"
# Waits this long for a lock another session holds (a process already on the new store), then
# the move stops: it never waits behind a running supervisor for ever.
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '5s'"
# A move's one transaction sits idle between its statements while it reads the SQLite file
# (a count or a table's first rows may take seconds): the session timeout that frees a frozen
# supervisor's locks (connections.IDLE_IN_TRANSACTION_MS) would end it. Off for this one.
NO_IDLE_TIMEOUT = "SET LOCAL idle_in_transaction_session_timeout = 0"
SET_TOP = "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)"
# The same text storemove.checksum builds from the rows it sent: ids and states, in id order.
# Starts not yet known that were moved (rows of a job a dead supervisor had sent ahead): every
# moved job is stopped, so each counts as begun now, as a drain counts a stopped job's.
SETTLE_UNKNOWN_STARTS = f"""
WITH rate AS (UPDATE rate_starts SET at = {NOW}, job_id = NULL WHERE job_id IS NOT NULL)
UPDATE flow_starts SET until = {NOW} + {FLOW_UNTIL}, job_id = NULL WHERE job_id IS NOT NULL
"""
JOBS_CHECKSUM = ("SELECT md5(coalesce(string_agg(id::text || ':' || state, ',' ORDER BY id), "
                 "'')) AS sum FROM jobs")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PgRestore:
    """The writes of a move, on ``conn`` inside its one transaction."""

    def __init__(self, conn: psycopg.Connection[Any], where: str) -> None:
        self.conn = conn
        self.where = where
        self._types: dict[str, dict[str, str]] = {}  # table -> column -> its type's name

    def tables(self) -> list[str]:
        return [str(r["name"]) for r in self.conn.execute(SCHEMA_TABLES)]

    def columns(self, table: str) -> list[str]:
        rows = self.conn.execute(TABLE_COLUMNS, (table,)).fetchall()
        self._types[table] = {str(r["name"]): str(r["type"]) for r in rows}
        return list(self._types[table])

    def lock(self, tables: Sequence[str]) -> None:
        """Lock every table against writers (readers still read) until the commit: nothing
        else writes into the store while it is filled and checked."""
        psycopg, _ = driver()
        self.conn.execute(NO_IDLE_TIMEOUT)
        self.conn.execute(LOCK_TIMEOUT)
        try:
            self.conn.execute(
                f"LOCK TABLE {', '.join(_quoted(t) for t in tables)} IN EXCLUSIVE MODE")
        except psycopg.errors.LockNotAvailable:
            raise StorageError(
                f"another process is using the store at {self.where} (its tables stayed locked "
                "for 5 s): stop every litejobs process on it, then run again") from None

    def counts(self, tables: Sequence[str]) -> dict[str, int]:
        return {t: int(self._scalar(f"SELECT count(*) AS n FROM {_quoted(t)}")) for t in tables}

    @contextlib.contextmanager
    def copy(self, table: str, columns: Sequence[str]) -> Iterator[Any]:
        """A binary ``COPY table (columns) FROM STDIN``: ``write_row`` on what it yields. The
        binary format is a third faster than text here (no parsing on the server), and takes
        SQLite's values as they come: an integer 0/1 for a boolean, a float for a double. A
        value that does not fit its column stops the move in one line naming the table."""
        psycopg, _ = driver()
        if table not in self._types:
            self.columns(table)
        types = self._types[table]
        cols = ", ".join(_quoted(c) for c in columns)
        try:
            with self.conn.cursor().copy(
                    f"COPY {_quoted(table)} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([types[c] for c in columns])
                yield copy
        except psycopg.OperationalError:
            raise
        except (psycopg.Error, TypeError, ValueError, OverflowError) as exc:
            raise StorageError(
                f"PostgreSQL at {self.where} refused a row of table {table} "
                f"({_first_line(exc)}); nothing was committed") from None

    def set_top(self, table: str, top: int) -> None:
        """Start ``table``'s ids past ``top``: a new row never takes an id a moved one had
        (or a deleted one had, before the move)."""
        if top > 0:
            self.conn.execute(SET_TOP, (table, top))

    def settle_unknown_starts(self) -> int:
        """Give the moved starts not yet known the time now (their jobs no longer run);
        returns how many flow keys' starts got one."""
        return int(self.conn.execute(SETTLE_UNKNOWN_STARTS).rowcount)

    def jobs_checksum(self) -> str:
        return str(self._scalar(JOBS_CHECKSUM))

    def _scalar(self, statement: str) -> Any:
        row = self.conn.execute(statement).fetchone()
        assert row is not None
        return next(iter(row.values()))


def peek(url: str) -> dict[str, int] | None:
    """Rows per table of the litejobs store at ``url``, creating and writing nothing (for a
    dry run); None when it has no litejobs schema yet. StorageError when unreachable."""
    psycopg, _ = driver()
    from psycopg.rows import dict_row

    where = redacted(url)
    try:
        with psycopg.connect(url, connect_timeout=10, row_factory=dict_row) as conn:
            row = conn.execute(HAS_JOBS).fetchone()
            if row is None or not row["present"]:
                return None
            restore = PgRestore(conn, where)
            return restore.counts(restore.tables())
    except psycopg.Error as exc:
        raise StorageError(f"cannot read PostgreSQL at {where} ({_first_line(exc)}); check "
                           "that the server is up and the URL is right") from None


def reachable(url: str) -> None:
    """StorageError in one line when the server at ``url`` cannot be reached: asked once,
    before a pool is made (a pool retries in the background and logs each failure)."""
    psycopg, _ = driver()
    try:
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to PostgreSQL at {redacted(url)} "
                           f"({_first_line(exc)}); check that the server is up, reachable "
                           "from here, and that the URL is right") from None
