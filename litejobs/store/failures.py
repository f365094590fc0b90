"""What went wrong with the file, in one line a user can act on: apsw's errors mapped to
StorageError (and StorageFull), and the facts those lines rest on."""

from __future__ import annotations

import os

import apsw

from litejobs.errors import StorageError, StorageFull
from litejobs.store.busy import BUSY_DEADLINE

__all__ = ["STORAGE_ERRORS", "disk_full", "file_id", "storage_error"]

#: The apsw errors that are about the file (its disk, permissions, contents, lock), not a bug:
#: each becomes a StorageError, which the supervisor's loop survives.
STORAGE_ERRORS = (apsw.BusyError, apsw.FullError, apsw.ReadOnlyError, apsw.IOError,
                  apsw.CorruptError, apsw.NotADBError, apsw.CantOpenError)

#: I/O errors SQLite reports when a file could not grow: making the -shm on a full disk is
#: SQLITE_IOERR_SHMSIZE, a bare "disk I/O error", not SQLITE_FULL.
_GROWTH_ERRORS = frozenset({apsw.SQLITE_IOERR_SHMSIZE, apsw.SQLITE_IOERR_SHMMAP,
                            apsw.SQLITE_IOERR_SHMOPEN, apsw.SQLITE_IOERR_WRITE,
                            apsw.SQLITE_IOERR_TRUNCATE, apsw.SQLITE_IOERR_FSYNC})
#: Below this much free space, a growth error means the disk is full.
FULL_BELOW = 1024 * 1024


def disk_full(path: str) -> bool:
    """Whether the file system holding ``path`` is (nearly) out of space or inodes."""
    try:
        st = os.statvfs(os.path.dirname(path))
    except OSError:
        return False
    # root may use the blocks reserved for it, others may not
    free = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return free * st.f_frsize < FULL_BELOW or (st.f_files > 0 and st.f_favail == 0)


def file_id(path: str) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``; None when nothing is there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def storage_error(path: str, exc: apsw.Error) -> StorageError:
    """``exc``, an error SQLite raised about the file at ``path``, as one actionable line."""
    if isinstance(exc, apsw.FullError) or (
            isinstance(exc, apsw.IOError)
            and getattr(exc, "extendedresult", None) in _GROWTH_ERRORS
            and disk_full(path)):
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

