"""A consistent copy of the file while everything runs: SQLite's online backup, page by page.

The copy reads one snapshot: the source connection holds a read transaction from the first
step to the last, so writes committed meanwhile (WAL mode: readers never block writers) are
neither copied nor make the backup start over, as they would between steps without it. The
copy is written in rollback-journal mode (no -wal file beside it: one ordinary file to move
around; litejobs switches it to WAL when it first opens it) and checked before it is kept.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

import apsw

from litejobs.errors import StorageError
from litejobs.store.connections import Connections
from litejobs.store.failures import storage_error
from litejobs.store.rows import Row, _scalar

__all__ = ["PAGES_PER_STEP", "PAUSE", "StoreBackup"]

#: Pages copied per step (4 MB at SQLite's default 4 KB page).
PAGES_PER_STEP = 1024
#: Seconds between steps: the copy's reads and writes leave the disk to the supervisors'.
PAUSE = 0.002

COUNT_JOBS = "SELECT count(*) FROM jobs"
VERSION = "PRAGMA user_version"

#: ``progress(copied pages, total pages)``.
Progress = Callable[[int, int], None]


class StoreBackup(Connections):
    """``backup_to`` of Store (see protocols.Maintenance)."""

    def backup_to(self, dest: str, progress: Progress | None = None,
                  pages: int = PAGES_PER_STEP, pause: float = PAUSE) -> Row:
        """Copy the file as of now into ``dest`` (a new file: the caller picks a name no one
        uses, and renames it once this returns) and verify the copy: SQLite's
        ``integrity_check``, the same job count and schema version as the snapshot copied.
        Returns ``jobs``, ``schema_version``, ``pages``, ``bytes``. Raises StorageError when
        the copy cannot be made or fails its checks."""
        source = self.connection()
        try:
            target = apsw.Connection(dest, flags=apsw.SQLITE_OPEN_READWRITE
                                     | apsw.SQLITE_OPEN_CREATE)
        except apsw.Error as exc:
            raise StorageError(f"cannot create {dest}: {exc}") from None
        try:
            source.execute("BEGIN")
            try:
                # the snapshot starts at the first read, not at BEGIN
                jobs = int(_scalar(source, COUNT_JOBS))
                version = int(_scalar(source, VERSION))
                total = self._copy(source, target, progress, pages, pause)
            finally:
                with contextlib.suppress(apsw.Error):
                    source.execute("COMMIT")
            target.execute("PRAGMA journal_mode = DELETE")
            self._verify(target, dest, jobs, version)
        except apsw.Error as exc:
            raise storage_error(self.path, exc) from None
        finally:
            target.close()
        return {"jobs": jobs, "schema_version": version, "pages": total,
                "bytes": os.path.getsize(dest)}

    @staticmethod
    def _copy(source: apsw.Connection, target: apsw.Connection, progress: Progress | None,
              pages: int, pause: float) -> int:
        with target.backup("main", source, "main") as b:
            while True:
                b.step(pages)
                total = int(b.page_count)
                if progress is not None:
                    progress(total - int(b.remaining), total)
                if b.done:
                    break
                time.sleep(pause)
        return total

    @staticmethod
    def _verify(target: apsw.Connection, dest: str, jobs: int, version: int) -> None:
        problems = [str(r[0]) for r in target.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise StorageError(f"the copy {dest} failed SQLite's integrity_check "
                               f"({'; '.join(problems[:3])}); it was not kept. Run "
                               "`litejobs doctor` on the database, then back up again")
        copied = int(_scalar(target, COUNT_JOBS))
        copied_version = int(_scalar(target, VERSION))
        if (copied, copied_version) != (jobs, version):
            raise StorageError(f"the copy {dest} holds {copied} jobs at schema "
                               f"{copied_version}, the database {jobs} at schema {version}; "
                               "it was not kept. Back up again")
