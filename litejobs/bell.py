"""The doorbell: a datagram that wakes idle supervisors the moment a job is enqueued.

Each running supervisor binds a Unix datagram socket in a directory beside the database file.
A producer, after its transaction commits, sends one tiny datagram to every socket there. The
bell is only a hint: a missed ring costs at most the supervisor's slow fallback poll, never a
job, because the database stays the single source of truth.

A ring is one byte: ``q`` new jobs are ready now (claim), ``e`` something changed that may
include scheduled jobs (claim, and look for the next due time again), ``c`` a job was
cancelled (check that running jobs are still ours).

The directory (``<database>-bells``, or a private per-user one when that path is too long for a
socket address, see bell_dirs) also holds the turns file. Another local user must not be able
to put anything there: a link planted in place of the turns file once led a contended write to
overwrite a file of ours. So it is used only once lstat shows it is a real directory of ours
that no one else can write (prepare_dir); otherwise the supervisor listens on nothing (its
poll finds the jobs), writers go without turns, and a warning says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import stat
import time
from typing import Any

__all__ = ["Bell", "BellListener", "bell_dir", "bell_dirs", "dir_chain", "dir_problem",
           "listen", "prepare_dir", "warn_unsafe"]

log = logging.getLogger("litejobs")

#: How long a producer trusts its list of listening supervisors before looking again.
RECHECK = 0.05
#: sun_path holds 108 bytes on Linux; keep a margin for the socket's own file name.
_MAX_DIR = 80
_warned: set[str] = set()


def listen(store: Any, name: str) -> Any:
    """Open ``store`` for writing, then its supervisor's listener (``store.bell_listener``):
    an unusable database (a read-only or foreign file, a server that refuses) is refused
    before anything (the wake-up socket's directory) is made beside it."""
    try:
        if store.local_file:
            store.connection()
        else:
            store.pool()  # the server reached, its schema made or migrated
        return store.bell_listener(name)
    except OSError as exc:
        from litejobs.errors import StorageError

        raise StorageError(
            f"cannot create the wake-up socket in {bell_dir(store.path)} "
            f"({exc.strerror}); the directory of {store.path} must be writable by "
            "this user (SQLite creates its -wal and -shm files there too)") from None


def _digest(db_path: str) -> str:
    return hashlib.sha1(os.path.abspath(db_path).encode()).hexdigest()[:16]


def _tmp_root(tmp: str | None = None) -> str:
    """This user's private directory under the temporary directory (made by prepare_dir).

    Its name is predictable, so another user may create it first: it is used only once
    lstat shows it is ours, a real directory, and writable by nobody else."""
    if tmp is None:
        tmp = os.environ.get("TMPDIR", "")
    return os.path.join(tmp if os.path.isabs(tmp) else "/tmp", f"litejobs-{os.geteuid()}")


def _private_root(root: str) -> bool:
    """Whether ``root`` is a per-user runtime directory made by the login manager (so no
    other user can have made it first): a real directory, ours, mode 0700."""
    try:
        st = os.lstat(root)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and stat.S_IMODE(st.st_mode) == 0o700)


def bell_dirs(db_path: str) -> list[str]:
    """Every directory where a supervisor serving ``db_path`` may have its socket, the one
    this process uses (for its own socket and the turns file) first.

    ``<database>-bells`` beside the file, unless that path is too long for a socket address;
    then a private per-user directory: under XDG_RUNTIME_DIR when it is set and private,
    else under the temporary directory. A producer rings them all, and systemd's
    /run/user/UID too: a supervisor started by systemd has a runtime directory where a
    producer started by cron has no XDG_RUNTIME_DIR."""
    path = os.path.abspath(db_path) + "-bells"
    if len(path.encode()) <= _MAX_DIR:
        return [path]
    digest = _digest(db_path)
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    dirs = [os.path.join(xdg, f"litejobs-{digest}")] if (
        os.path.isabs(xdg) and _private_root(xdg)) else []
    tmp = os.path.join(_tmp_root(), digest)
    if len(tmp.encode()) > _MAX_DIR:  # a TMPDIR too long for socket addresses
        tmp = os.path.join(_tmp_root("/tmp"), digest)
    dirs.append(tmp)
    systemd = f"/run/user/{os.geteuid()}"
    if os.path.normpath(xdg) != systemd and _private_root(systemd):
        dirs.append(os.path.join(systemd, f"litejobs-{digest}"))
    return [d for d in dirs if len(d.encode()) <= _MAX_DIR]


def bell_dir(db_path: str) -> str:
    """Where the sockets of supervisors serving ``db_path`` live (and the turns file)."""
    return bell_dirs(db_path)[0]


def dir_problem(directory: str) -> str | None:
    """What makes an existing ``directory`` unsafe to put sockets and the turns file in, or
    None: it must be a real directory (not a symbolic link), owned by this user and writable
    by no one else, or another local user could plant links or sockets in it.
    OSError when it cannot be looked at (FileNotFoundError: not there)."""
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode):
        return f"{directory} is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return f"{directory} is not a directory"
    if st.st_uid != os.geteuid():
        return f"{directory} is owned by uid {st.st_uid}, not this user (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"{directory} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def warn_unsafe(directory: str, problem: str) -> None:
    """Log once per process why ``directory`` is not used, and what to do."""
    if directory in _warned:
        return
    _warned.add(directory)
    beside = directory.removesuffix("/turns").endswith("-bells")
    shorter = "" if beside else (f", or the database gets a path under {_MAX_DIR - 6} bytes "
                                 "(its directory then sits beside it)")
    log.warning("not using %s for wake-up sockets and turns: %s. Supervisors find new jobs "
                "by polling (every second) and contended writes go without turns until it is "
                "removed (as its owner or root)%s", directory, problem, shorter)


def dir_chain(directory: str) -> list[str]:
    """The directories prepare_dir makes and checks for ``directory``: this user's own parent
    under the temporary directory first, for a fallback one there."""
    parent = os.path.dirname(directory)
    return ([parent] if parent in (_tmp_root(), _tmp_root("/tmp")) else []) + [directory]


def prepare_dir(directory: str) -> bool:
    """Create ``directory`` (mode 0700, and this user's private parent for a fallback one)
    if missing; True when it is safe to use (see dir_problem), False (logged once) when
    not. OSError when it cannot be created (the database's directory is not writable)."""
    for d in dir_chain(directory):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)
        problem = dir_problem(d)
        if problem is not None:
            warn_unsafe(d, problem)
            return False
    return True


class Bell:
    """A producer's side: ring every listening supervisor. Cheap enough for every enqueue."""

    def __init__(self, db_path: str) -> None:
        self.directories = bell_dirs(db_path)
        self.directory = self.directories[0]
        self._sock: socket.socket | None = None
        self._pid = -1
        self._mtimes: dict[str, float] = {}
        self._found: dict[str, list[str]] = {}
        self._targets: list[str] = []
        self._checked = -RECHECK

    def _refresh(self) -> None:
        # Re-read the directories at most every RECHECK seconds: a stat per enqueue is a
        # measurable share of a fast enqueue, and a supervisor that starts claims at once.
        now = time.monotonic()
        if now - self._checked < RECHECK:
            return
        self._checked = now
        changed = False
        for directory in self.directories:
            try:
                st = os.lstat(directory)
            except OSError:
                st = None
            # Sockets in a directory another user controls could be anyone's: ring none there.
            safe = (st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
                    and not st.st_mode & 0o022)
            mtime = st.st_mtime if st is not None and safe else -1.0
            if mtime == self._mtimes.get(directory):
                continue
            self._mtimes[directory] = mtime
            changed = True
            found: list[str] = []
            if mtime >= 0:
                with contextlib.suppress(OSError):
                    found = [os.path.join(directory, n)
                             for n in os.listdir(directory) if n.endswith(".sock")]
            self._found[directory] = found
        if changed:
            self._targets = [t for d in self.directories for t in self._found.get(d, [])]

    def ring(self, message: bytes = b"e") -> None:
        """Send ``message`` to every supervisor; never raises, never blocks."""
        self._refresh()
        if not self._targets:
            return
        if self._sock is None or self._pid != os.getpid():
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
            self._pid = os.getpid()
        for target in self._targets:
            try:
                self._sock.sendto(message, target)
            except OSError:
                # EAGAIN: its buffer is full, so it is awake anyway. ECONNREFUSED/ENOENT: a
                # supervisor that died without cleaning up. Anything else: the bell is only a
                # hint and the supervisor's poll finds the job; an enqueue must not fail here.
                pass


class BellListener:
    """A supervisor's side: a bound, non-blocking socket to select on."""

    def __init__(self, db_path: str, name: str) -> None:
        self.directory = bell_dir(db_path)
        self.path: str | None = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        try:
            if not prepare_dir(self.directory):
                # Unsafe (warned): an unbound socket never becomes readable, so the supervisor
                # finds new jobs by its poll alone; nothing is created in that directory.
                return
            path = os.path.join(self.directory, f"{name}.sock")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self.sock.bind(path)
            self.path = path
            os.chmod(path, 0o600)
        except BaseException:
            self.sock.close()
            raise
        self._prune_dead()

    def _prune_dead(self) -> None:
        """Remove sockets nobody listens on (left by supervisors that were killed)."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        probe.setblocking(False)
        try:
            for name in os.listdir(self.directory):
                path = os.path.join(self.directory, name)
                if path == self.path or not name.endswith(".sock"):
                    continue
                try:
                    probe.sendto(b"p", path)
                except ConnectionRefusedError:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                except OSError:
                    pass
        finally:
            probe.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> bytes:
        """Read every pending ring; returns their bytes joined."""
        out = bytearray()
        while True:
            try:
                out += self.sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return bytes(out)

    def close(self) -> None:
        self.sock.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
