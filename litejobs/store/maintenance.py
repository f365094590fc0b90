"""Keeping the file healthy: checkpoints, the WAL's size, integrity checks, and the facts
``litejobs doctor`` reads (on a read-only connection)."""

from __future__ import annotations

import os

import apsw

from litejobs.errors import StorageError
from litejobs.store import sql
from litejobs.store.busy import Waiter
from litejobs.store.connections import Connections
from litejobs.store.failures import stale_wal_at, storage_error
from litejobs.store.header import read_head
from litejobs.store.rows import Row, _dicts, _scalar
from litejobs.store.schema import SQLITE_HEADER

__all__ = ["StoreMaintenance"]


class StoreMaintenance(Connections):
    """The maintenance operations of Store (see protocols.Maintenance)."""

    def inspect(self, now: float) -> Row:
        """Facts for ``litejobs doctor``, read on a read-only connection (nothing is written).

        Call ``verify()`` first: this assumes a litejobs file.
        """
        conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            conn.set_busy_handler(Waiter(self.busy_timeout, None))
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
            raise storage_error(self.path, exc) from None
        finally:
            conn.close()
        return facts

    def verify(self) -> None:
        """Refuse a file litejobs must not use, without writing to it: not SQLite, another
        program's, from a newer litejobs, or failing SQLite's ``quick_check``."""
        stale = stale_wal_at(self.path)  # before opening it: that would replay the WAL
        if stale is not None:
            raise StorageError(stale)
        try:
            head = read_head(self.path, 16)
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
        conn = self._read_only()
        try:
            self._check_identity(conn)
            problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
        except apsw.Error as exc:
            raise storage_error(self.path, exc) from None
        finally:
            conn.close()
        if problems != ["ok"]:
            raise StorageError(
                f"{self.path} failed SQLite's quick_check ({'; '.join(problems[:3])}); "
                "litejobs will not write to it. Restore it from a backup, or move it aside "
                "and start a new file"
            )


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
            raise storage_error(self.path, exc) from None
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
