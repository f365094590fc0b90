"""``litejobs backup DEST``: a consistent, verified copy of the file while everything runs.

SQLite's online backup copies one snapshot of the file a few megabytes a step, pausing between
steps (``Store.backup_to``): supervisors and producers go on writing meanwhile (WAL mode:
readers never block writers), and what they commit after the copy began is not in it. The copy
goes to a temporary name beside DEST, is checked (``integrity_check``, the snapshot's job count
and schema version), synced to disk and only then renamed to DEST: there is never a half file
at DEST. It is one ordinary SQLite file (no -wal beside it) that ``litejobs --database DEST``
opens as it is.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

from litejobs.errors import StorageError

__all__ = ["backup", "check_destination"]

#: ``report(copied pages, total pages, seconds since the start)``.
Report = Callable[[int, int, float], None]


def check_destination(database: str, dest: str, force: bool = False) -> str:
    """``dest`` as an absolute path, or ValueError naming why a backup may not go there."""
    dest = os.path.abspath(dest)
    directory = os.path.dirname(dest)
    if os.path.isdir(dest):
        raise ValueError(f"{dest} is a directory; give the backup a file name, e.g. "
                         f"{os.path.join(dest, os.path.basename(database))}")
    if not os.path.isdir(directory):
        raise ValueError(f"the directory {directory} does not exist; create it first")
    same = os.path.realpath(dest) == os.path.realpath(database)
    with contextlib.suppress(OSError):
        same = same or os.path.samefile(dest, database)
    if same:
        raise ValueError(f"{dest} is the database itself; back up to another file")
    for suffix in ("-wal", "-journal"):
        if os.path.exists(dest + suffix):
            raise ValueError(f"{dest}{suffix} exists beside {dest}: another database's log, "
                             "which SQLite would apply to the copy; move it aside or back up "
                             "to another name")
    if os.path.lexists(dest) and not force:
        raise ValueError(f"{dest} already exists; pass --force to replace it")
    return dest


def backup(database: str, dest: str, force: bool = False, report: Report | None = None,
           ) -> dict[str, Any]:
    """Copy ``database`` to ``dest`` (see the module); returns what was written: ``path``,
    ``jobs``, ``schema_version``, ``bytes``, ``seconds``. ValueError for a destination that
    is refused, StorageError when the copy cannot be made or fails its checks (nothing is
    left at DEST then)."""
    from litejobs.store import Store, is_url, shown

    if is_url(database):
        raise ValueError(f"litejobs backup copies a SQLite file; back up the PostgreSQL "
                         f"database {shown(database)} with pg_dump (pg_dump -Fc -f {dest} "
                         "'URL')")
    dest = check_destination(database, dest, force)
    if not os.path.exists(database):
        raise ValueError(f"no database at {database}; check --database / LITEJOBS_DATABASE")
    tmp = os.path.join(os.path.dirname(dest),
                       f".{os.path.basename(dest)}.tmp-{os.getpid()}-{secrets.token_hex(3)}")
    start = time.monotonic()

    def progress(done: int, total: int) -> None:
        if report is not None:
            report(done, total, time.monotonic() - start)

    store = Store(database)
    try:
        facts = store.backup_to(tmp, progress)
        _sync(tmp)
        if os.path.lexists(dest) and not force:  # made meanwhile: never overwrite it
            raise ValueError(f"{dest} already exists; pass --force to replace it")
        os.replace(tmp, dest)
        _sync(os.path.dirname(dest))
    except BaseException:
        for leftover in (tmp, tmp + "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        raise
    finally:
        store.close()
    return {"path": dest, "jobs": facts["jobs"], "schema_version": facts["schema_version"],
            "bytes": facts["bytes"], "seconds": round(time.monotonic() - start, 3)}


def _sync(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise StorageError(f"cannot open {path} to sync it: {exc.strerror}") from None
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
