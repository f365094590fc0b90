"""The doorbell: a datagram that wakes idle supervisors the moment a job is enqueued.

Each running supervisor binds a Unix datagram socket in a directory beside the database file.
A producer, after its transaction commits, sends one tiny datagram to every socket there. The
bell is only a hint: a missed ring costs at most the supervisor's slow fallback poll, never a
job, because the database stays the single source of truth.

A ring is one byte: ``q`` new jobs are ready now (claim), ``e`` something changed that may
include scheduled jobs (claim, and look for the next due time again), ``c`` a job was
cancelled (check that running jobs are still ours).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time

__all__ = ["Bell", "BellListener", "bell_dir"]

#: How long a producer trusts its list of listening supervisors before looking again.
RECHECK = 0.05
#: sun_path holds 108 bytes on Linux; keep a margin for the socket's own file name.
_MAX_DIR = 80


def bell_dir(db_path: str) -> str:
    """Where the sockets of supervisors serving ``db_path`` live."""
    path = os.path.abspath(db_path) + "-bells"
    if len(path.encode()) <= _MAX_DIR:
        return path
    import tempfile  # rarely needed, and it pulls in shutil and the compression modules

    digest = hashlib.sha1(os.path.abspath(db_path).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"litejobs-{os.getuid()}-{digest}")


class Bell:
    """A producer's side: ring every listening supervisor. Cheap enough for every enqueue."""

    def __init__(self, db_path: str) -> None:
        self.directory = bell_dir(db_path)
        self._sock: socket.socket | None = None
        self._pid = -1
        self._mtime = -1.0
        self._targets: list[str] = []
        self._checked = -RECHECK

    def _refresh(self) -> None:
        # Re-read the directory at most every RECHECK seconds: a stat per enqueue is a
        # measurable share of a fast enqueue, and a supervisor that starts claims at once.
        now = time.monotonic()
        if now - self._checked < RECHECK:
            return
        self._checked = now
        try:
            mtime = os.stat(self.directory).st_mtime
        except OSError:
            self._targets = []
            self._mtime = -1.0
            return
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self._targets = [
                    os.path.join(self.directory, n)
                    for n in os.listdir(self.directory) if n.endswith(".sock")
                ]
            except OSError:
                self._targets = []

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
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(self.directory, f"{name}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self.sock.setblocking(False)
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
        with contextlib.suppress(OSError):
            os.unlink(self.path)
