"""The PostgreSQL store's cron entries stored at run time (``app.schedule``, ``litejobs cron
add``): writing, removing and reading them, and the write transaction in which the ticker
sees which ones still exist. As in the SQLite store, an entry's ``cron_entries`` history is
reset in the transaction that stores a new entry or a changed schedule, and removed with it.

``created_at``/``updated_at`` are the server's clock (``updated_at`` strictly later than the
row it replaces: the ticker tells versions apart by it); the history's ``since`` is the
caller's ``now``, as ``cron_reset`` takes it (see ``cron``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from litejobs.store.postgres.cron import UPSERT_CRON_ENTRY
from litejobs.store.postgres.sql import LOCK_KEY, NOW
from litejobs.store.postgres.tx import PgTx
from litejobs.store.rows import Row

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgSchedulesMixin"]

T = TypeVar("T")

SCHEDULE_COLUMNS = ("name, schedule, task, args, kwargs, timezone, options, created_at, "
                    "updated_at")
SELECT_SCHEDULES = f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"
SELECT_SCHEDULE = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = %s"
# Two puts of one name on two hosts: the second waits for the first, then sees its row.
LOCK_SCHEDULE = f"SELECT pg_advisory_xact_lock({LOCK_KEY}, hashtext('schedule' || chr(31) || %s))"
UPSERT_SCHEDULE = f"""
INSERT INTO schedules (name, schedule, task, args, kwargs, timezone, options, created_at,
                       updated_at)
VALUES (%(name)s, %(schedule)s, %(task)s, %(args)s, %(kwargs)s, %(timezone)s, %(options)s,
        {NOW}, {NOW})
ON CONFLICT (name) DO UPDATE SET
    schedule = excluded.schedule, task = excluded.task, args = excluded.args,
    kwargs = excluded.kwargs, timezone = excluded.timezone, options = excluded.options,
    updated_at = greatest(excluded.updated_at, schedules.updated_at + 1e-6)
RETURNING {SCHEDULE_COLUMNS}
"""
DELETE_SCHEDULE = "DELETE FROM schedules WHERE name = %s"
DELETE_CRON_STATE = "DELETE FROM cron_entries WHERE name = %s"
SELECT_CRON_KEY = "SELECT schedule FROM cron_entries WHERE name = %s"
#: Changes with every put and delete: what the ticker compares instead of reading every row.
SCHEDULES_MARK = """
SELECT count(*) AS n, max(updated_at) AS newest, coalesce(sum(updated_at), 0) AS total
FROM schedules
"""
SCHEDULE_STAMPS = "SELECT name, updated_at FROM schedules"


class PgSchedulesMixin:
    """The stored cron entries' operations of PostgresStore."""

    if TYPE_CHECKING:
        def _transaction(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T: ...

        def _read(self, statement: str, params: Any = ()) -> list[Row]: ...

        def write(self, fn: Callable[[PgTx], T]) -> T: ...

    def schedules(self) -> list[Row]:
        """Every stored entry, by name (args, kwargs and options as JSON text)."""
        return self._read(SELECT_SCHEDULES)

    def get_schedule(self, name: str) -> Row | None:
        rows = self._read(SELECT_SCHEDULE, (name,))
        return rows[0] if rows else None

    def put_schedule(self, row: Row, cron_key: str, now: float) -> tuple[Row, bool]:
        """Store (insert or replace) an entry; a new one, or one whose ``cron_key`` changed,
        starts its history at ``now``. Returns the stored row and whether it is new."""

        def put(conn: psycopg.Connection[Any]) -> tuple[Row, bool]:
            conn.execute(LOCK_SCHEDULE, (row["name"],))
            old = conn.execute(SELECT_SCHEDULE, (row["name"],)).fetchone()
            stored: Row | None = conn.execute(UPSERT_SCHEDULE, row).fetchone()
            assert stored is not None
            key = conn.execute(SELECT_CRON_KEY, (row["name"],)).fetchone()
            if old is None or key is None or key["schedule"] != cron_key:
                conn.execute(UPSERT_CRON_ENTRY, (row["name"], cron_key, now))
            return stored, old is None

        return self._transaction(put)

    def delete_schedule(self, name: str) -> bool:
        """Remove a stored entry and its cron state; False when there was none."""

        def delete(conn: psycopg.Connection[Any]) -> bool:
            if conn.execute(DELETE_SCHEDULE, (name,)).rowcount != 1:
                return False
            conn.execute(DELETE_CRON_STATE, (name,))
            return True

        return self._transaction(delete)

    def schedules_mark(self) -> tuple[int, float | None, float]:
        """A cheap fingerprint of the table: it differs after any put or delete."""
        row = self._read(SCHEDULES_MARK)[0]
        newest = row["newest"]
        return int(row["n"]), None if newest is None else float(newest), float(row["total"])

    def write_with_schedules(self, fn: Callable[[PgTx, dict[str, float]], T]) -> T:
        """``write(fn)`` that also hands ``fn`` each stored entry's ``updated_at``, read in
        the same transaction."""

        def run(tx: PgTx) -> T:
            stamps = {str(r["name"]): float(r["updated_at"])
                      for r in tx.conn.execute(SCHEDULE_STAMPS)}
            return fn(tx, stamps)

        return self.write(run)
