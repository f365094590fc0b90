"""Cron entries stored at run time (the ``schedules`` table, schema 6): writing, removing and
reading them, and the write transaction in which the ticker sees which ones still exist.

An entry's ``cron_entries`` state (its exactly-once history) is reset in the same transaction
that stores a new entry or a changed schedule, so its history starts at the moment of the
change, whenever a supervisor notices it; removing an entry removes its state with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import apsw

from litejobs.store import sql
from litejobs.store.connections import Connections
from litejobs.store.rows import Row, _dicts
from litejobs.store.tx import Tx

__all__ = ["StoreSchedules"]

T = TypeVar("T")

SCHEDULE_COLUMNS = ("name, schedule, task, args, kwargs, timezone, options, created_at, "
                    "updated_at")
SELECT_SCHEDULES = f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"
SELECT_SCHEDULE = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?"
UPSERT_SCHEDULE = """
INSERT INTO schedules (name, schedule, task, args, kwargs, timezone, options, created_at,
                       updated_at)
VALUES (:name, :schedule, :task, :args, :kwargs, :timezone, :options, :now, :now)
ON CONFLICT (name) DO UPDATE SET
    schedule = excluded.schedule, task = excluded.task, args = excluded.args,
    kwargs = excluded.kwargs, timezone = excluded.timezone, options = excluded.options,
    updated_at = excluded.updated_at
"""
DELETE_SCHEDULE = "DELETE FROM schedules WHERE name = ?"
DELETE_CRON_STATE = "DELETE FROM cron_entries WHERE name = ?"
SELECT_CRON_KEY = "SELECT schedule FROM cron_entries WHERE name = ?"
#: Changes with every put and delete (each put moves its row's updated_at forward): what the
#: ticker compares once a second instead of reading every row.
SCHEDULES_MARK = "SELECT count(*), max(updated_at), total(updated_at) FROM schedules"
SCHEDULE_STAMPS = "SELECT name, updated_at FROM schedules"


class StoreSchedules(Connections):
    """The stored cron entries' operations of Store (declared in protocols.Reads, Admin and
    Supervising)."""

    def schedules(self) -> list[Row]:
        """Every stored entry, by name (args, kwargs and options as JSON text)."""
        return self._read(SELECT_SCHEDULES)

    def get_schedule(self, name: str) -> Row | None:
        rows = self._read(SELECT_SCHEDULE, (name,))
        return rows[0] if rows else None

    def put_schedule(self, row: Row, cron_key: str, now: float) -> tuple[Row, bool]:
        """Store (insert or replace) an entry: ``row`` has name, schedule, task, args,
        kwargs, timezone, options (JSON text for the last three). ``cron_key`` identifies its
        schedule in ``cron_entries``: a new entry, or one whose key changed, starts its history
        at ``now``; an unchanged one goes on. Returns the stored row and whether it is new."""

        def put(cur: apsw.Cursor) -> tuple[Row, bool]:
            old = list(_dicts(cur.execute(SELECT_SCHEDULE, (row["name"],))))
            # Strictly later than the row it replaces, even with the clock stepped back: the
            # ticker tells versions apart by this stamp.
            stamp = max(now, old[0]["updated_at"] + 1e-6) if old else now
            cur.execute(UPSERT_SCHEDULE, {**row, "now": stamp})
            key = cur.execute(SELECT_CRON_KEY, (row["name"],)).fetchone()
            if not old or key is None or key[0] != cron_key:
                cur.execute(sql.UPSERT_CRON_ENTRY, (row["name"], cron_key, now))
            stored = next(_dicts(cur.execute(SELECT_SCHEDULE, (row["name"],))))
            return stored, not old

        return self._transaction(self.connection(), put)

    def delete_schedule(self, name: str) -> bool:
        """Remove a stored entry and its cron state; False when there was none."""

        def delete(cur: apsw.Cursor) -> bool:
            cur.execute(DELETE_SCHEDULE, (name,))
            if cur.connection.changes() != 1:
                return False
            cur.execute(DELETE_CRON_STATE, (name,))
            return True

        return self._transaction(self.connection(), delete)

    def schedules_mark(self) -> tuple[int, float | None, float]:
        """A cheap fingerprint of the table: it differs after any put or delete."""
        row = self._read(SCHEDULES_MARK)[0]
        count, newest, total = row.values()
        return int(count), None if newest is None else float(newest), float(total)

    def write_with_schedules(self, fn: Callable[[Tx, dict[str, float]], T]) -> T:
        """``write(fn)`` that also hands ``fn`` each stored entry's ``updated_at``, read in
        the same transaction: an entry removed or changed before it commits is seen so."""

        def run(cur: apsw.Cursor) -> T:
            stamps = {str(n): float(u) for n, u in cur.execute(SCHEDULE_STAMPS)}
            return fn(Tx(cur), stamps)

        return self._transaction(self.connection(), run)
