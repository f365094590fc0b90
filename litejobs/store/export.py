"""Reading every table of a litejobs SQLite file, for ``litejobs migrate-store``: one read
transaction (a consistent snapshot in WAL mode) on a connection that cannot write, so the file
is left exactly as it was: no schema upgrade, no checkpoint, no row touched.

The logic of the move (which tables, what becomes of running jobs) is ``litejobs.storemove``;
this module only reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import apsw

from litejobs.errors import StorageError
from litejobs.store.busy import Waiter
from litejobs.store.failures import STORAGE_ERRORS, storage_error
from litejobs.store.schema import APPLICATION_ID, IDENTITY, SCHEMA_VERSION

__all__ = ["SqliteExport"]

TABLES = "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
SUPERVISORS = "SELECT id, hostname, pid, heartbeat_at, pid_ns FROM supervisors"
# The highest job id ever handed out: job_ids.top keeps the highest a deleted job had, and a
# cron entry may name a job pruned since (schema._TOP_STORED_ID).
TOP_JOB_ID = """SELECT max(coalesce((SELECT max(id) FROM jobs), 0),
                  coalesce((SELECT max(top) FROM job_ids), 0),
                  coalesce((SELECT max(job_id) FROM cron_fires), 0),
                  coalesce((SELECT max(last_job) FROM cron_entries), 0),
                  coalesce((SELECT max(upstream) FROM job_deps), 0))"""
# workflows is AUTOINCREMENT: sqlite_sequence keeps its top past deleted rows.
TOP_WORKFLOW_ID = """SELECT max(coalesce((SELECT max(id) FROM workflows), 0),
                  coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'workflows'), 0))"""
# Changes when another connection commits to the file (not on checkpoints).
DATA_VERSION = "PRAGMA data_version"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqliteExport:
    """A litejobs SQLite file opened read-only; ``snapshot()`` starts the read transaction
    every later read sees."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise StorageError(f"{self.path} does not exist: give the path of the litejobs "
                               "SQLite file to move")
        try:
            self.conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READONLY)
        except apsw.Error as exc:
            raise storage_error(self.path, exc) from None
        self.conn.set_busy_handler(Waiter(busy_timeout, None))
        self._version: int | None = None
        try:
            app_id, version, objects = self._one(IDENTITY)
        except STORAGE_ERRORS as exc:
            self.conn.close()
            raise storage_error(self.path, exc) from None
        if app_id != APPLICATION_ID or not objects:
            self.conn.close()
            raise StorageError(f"{self.path} is not a litejobs database file; nothing to move")
        if version != SCHEMA_VERSION:
            self.conn.close()
            newer = version > SCHEMA_VERSION
            raise StorageError(
                f"{self.path} is at schema version {version}, this litejobs moves version "
                f"{SCHEMA_VERSION}: " + (
                    "upgrade litejobs (pip install -U litejobs)" if newer else
                    f"upgrade the file first (`litejobs stats --database {self.path}` does), "
                    "then run migrate-store again"))

    def _one(self, statement: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        row = self.conn.execute(statement, params).fetchone()
        assert row is not None
        return tuple(row)

    def snapshot(self) -> None:
        """Start the read transaction: from here every read sees the file as it is now."""
        self._version = int(self._one(DATA_VERSION)[0])
        self.conn.execute("BEGIN")
        self._one("SELECT count(*) FROM jobs")  # a deferred BEGIN takes its snapshot here

    def changed(self) -> bool:
        """Has another connection committed to the file since ``snapshot()``? Ends the read
        transaction."""
        self.conn.execute("COMMIT")
        return int(self._one(DATA_VERSION)[0]) != self._version

    def tables(self) -> list[str]:
        return [str(r[0]) for r in self.conn.execute(TABLES)]

    def columns(self, table: str) -> list[str]:
        return [str(r[1]) for r in self.conn.execute(f"PRAGMA table_info({_quoted(table)})")]

    def count(self, table: str, where: str | None = None) -> int:
        """Rows of ``table``; with ``where`` (a column name), those where it is not NULL."""
        filt = f" WHERE {_quoted(where)} IS NOT NULL" if where else ""
        return int(self._one(f"SELECT count(*) FROM {_quoted(table)}{filt}")[0])

    def rows(self, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
        """Every row of ``table`` (only ``columns``, in that order); jobs by id."""
        order = " ORDER BY id" if table == "jobs" else ""
        cols = ", ".join(_quoted(c) for c in columns)
        yield from self.conn.execute(f"SELECT {cols} FROM {_quoted(table)}{order}")

    def supervisors(self) -> list[dict[str, Any]]:
        names = ("id", "hostname", "pid", "heartbeat_at", "pid_ns")  # SUPERVISORS's columns
        return [dict(zip(names, row, strict=True)) for row in self.conn.execute(SUPERVISORS)]

    def tops(self) -> dict[str, int]:
        """The highest id ever handed out, by table with an identity: the destination's
        sequences start past them, so no id is given twice."""
        return {"jobs": int(self._one(TOP_JOB_ID)[0]),
                "workflows": int(self._one(TOP_WORKFLOW_ID)[0])}

    def close(self) -> None:
        self.conn.close()
