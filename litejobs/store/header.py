"""The database file's first bytes, read before SQLite opens it (to refuse a file that is not
ours, or a stale WAL beside it, without letting SQLite write or replay anything).

The descriptors are never closed: closing any descriptor of a file drops every POSIX lock this
process holds on it, including those of SQLite connections other threads have open (their
SHARED lock would vanish: the documented way to corrupt a database, sqlite.org/howtocorrupt.html
section 2.2). One per file this process has met at the path: a few at most.
"""

from __future__ import annotations

import os
import threading

__all__ = ["header_fd", "read_head"]

_FDS: dict[tuple[int, str], list[int]] = {}
_LOCK = threading.Lock()


def header_fd(path: str, flags: int = os.O_RDONLY) -> int:
    """A descriptor open on the file now at ``path`` (with O_CREAT: created 0600)."""
    key = (os.getpid(), path)
    with _LOCK:
        fds = _FDS.setdefault(key, [])
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        if now is not None:
            for fd in fds:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                    return fd
        fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
        fds.append(fd)
        return fd


def read_head(path: str, size: int) -> bytes:
    """The first ``size`` bytes of the file at ``path``; raises ``OSError`` (FileNotFoundError
    when there is none)."""
    return os.pread(header_fd(path), size, 0)
