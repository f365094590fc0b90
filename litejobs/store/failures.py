"""What went wrong with the file, in one line a user can act on: apsw's errors mapped to
StorageError (and StorageFull), and the facts those lines rest on."""

from __future__ import annotations

import os

import apsw

from litejobs.errors import StorageError, StorageFull
from litejobs.store.busy import BUSY_DEADLINE
from litejobs.store.header import read_head
from litejobs.store.schema import SQLITE_HEADER

__all__ = ["STORAGE_ERRORS", "disk_full", "file_id", "replayable_wal", "stale_wal",
           "stale_wal_at", "storage_error"]

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


#: The smallest -wal that can hold a frame (32-byte header, 24-byte frame header, 512-byte
#: page): SQLite ignores anything shorter, so it can replay nothing.
_WAL_FRAME_MIN = 32 + 24 + 512


def replayable_wal(path: str) -> int:
    """The size of the -wal beside the database ``path`` when it can hold a frame, else 0.

    One ``stat``. Make it BEFORE reading the database's first bytes: SQLite writes a new file's
    first page before that file's WAL exists, so a WAL seen first, beside a file that is then
    empty, can never be that file's own (another process creating the file at the same moment
    does not trip the check).
    """
    try:
        size = os.stat(path + "-wal").st_size
    except OSError:
        return 0
    return size if size >= _WAL_FRAME_MIN else 0


def stale_wal(path: str, head: bytes | None, wal: int) -> str | None:
    """Why the -wal beside ``path`` cannot be that file's own, as a refusal in one line; None
    when it may be. ``head``: the file's first bytes (at least 20), None when there is no file;
    ``wal``: ``replayable_wal(path)``, read before ``head``.

    SQLite does not tie a WAL to its database file (the WAL's salts and checksums only tie its
    frames to its own header), and it does not checkpoint a file that was deleted or moved
    while open when it closes it, so that file's -wal stays at the path. Opened beside a
    replacement, SQLite replays it over that file: the old jobs come back or the file is
    corrupted. Beside a missing or empty file it deletes the WAL (or fails with "disk I/O
    error" while the old file's process still runs). Refused here: every case where the WAL
    provably belongs to another file. Not detectable from the files alone: a WAL-mode SQLite
    file put in place of the old one (``cp``, ``mv``, the backup API keep WAL mode).
    """
    if not wal:
        return None
    if head is None:
        what = f"{path} does not exist"
    elif not head:
        what = f"{path} is empty"
    elif not head.startswith(SQLITE_HEADER):
        what = f"{path} has no SQLite header"
    elif len(head) > 18 and head[18] != 2:
        # Bytes 18-19 are 2 in every WAL-mode file; leaving WAL mode deletes the WAL first.
        what = (f"{path} is not a WAL-mode file (a copy made with VACUUM INTO or another "
                "tool?), so no WAL can be its own")
    else:
        return None
    want = (f"if a new, empty {path} is what you want" if head is None
            else f"if {path} is the file you want")
    return (f"{path}-wal ({wal} bytes) belongs to another database file: {what}. The "
            "database was deleted or replaced while in use, or a restore left the old WAL "
            f"behind, and SQLite would replay that WAL over {path} (or silently drop it); "
            f"litejobs wrote nothing. {want[0].upper()}{want[1:]}, move {path}-wal and "
            f"{path}-shm aside and try again; if you meant to keep the old jobs, restore "
            f"{path} from a backup first")


def stale_wal_at(path: str) -> str | None:
    """``stale_wal`` for the files at ``path`` now; reads, never creates or writes."""
    wal = replayable_wal(path)
    if not wal:
        return None
    try:
        head: bytes | None = read_head(path, 100)
    except FileNotFoundError:
        head = None
    except OSError:
        return None  # unreadable: the permission checks say so
    return stale_wal(path, head, wal)


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

