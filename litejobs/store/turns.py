"""Turns: a writer kept waiting for the database goes first once it has waited long enough.

SQLite gives the write lock to whoever tries at the moment it is free. A writer that got
SQLITE_BUSY sleeps between tries, so under steady contention it can keep losing to writers that
just arrived, above all to one that has just committed and writes again at once: with four
processes enqueueing in loops, most calls took microseconds but one in a hundred waited 5 ms
(20 ms with synchronous FULL) and the slowest tens of ms.

So the lock is taken the way Go's sync.Mutex is: first come first served is not kept while
waits are short (a writer on the CPU takes a free lock at once, which is what keeps the rate
up), but a writer that has waited ``STARVE`` seconds is starving, and while one is, every other
writer holds back and the starving ones go in the order they began to wait. Every forced
handoff is a switch to a process whose caches are cold, so ``STARVE`` is long enough that few
writers ever starve: with 1 ms (Go's figure) four producers' p99 fell 20 → 3 ms but their
total rate by a third to a half; with 10 ms the rate is unchanged and the slowest call went
from ~60 to ~14 ms (p99 21 → 12 ms with synchronous FULL).

Each connection that has met a locked file owns a slot in a small file shared by every process
on the database (``turns`` in the directory of the doorbell sockets): when it began waiting,
when it last looked, and a starving flag that arriving writers check with one read. A waiter
refreshes its slot as it waits, so the slot of a process that died or froze is passed over
after ``STALE`` seconds (and cleared once its owner is gone: slots are owned through a POSIX
lock on one byte each, which the kernel drops when the owner dies).

Nothing read from the file is trusted: it may be left from before a reboot (times from another
boot's clock), damaged, or cut short. A mark is live only if its times make sense (began before
last seen, last seen within ``STALE`` and not in the future); any other is passed over and
cleared once no process owns its slot. The file is read and written with pread/pwrite, not
mapped: a mapping of a file someone truncates kills its process with SIGBUS at the next touch,
while a short read is just zeros (idle). An arriving writer reads the flags at most once a
millisecond while no one starves (``QUIET``), so writes cost what they did with the mapping.
It is opened without following symbolic links, and only if it is a regular file of ours with
one name, in a directory only we can write (bell.prepare_dir).

Turns only order litejobs' writers among themselves: the lock is still SQLite's, so a writer
without a slot (the file cannot be created, every slot is taken) or outside litejobs (the
``sqlite3`` shell) takes its chances as before, and nothing here can block a write for good.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import struct
import threading
import time
import weakref

from litejobs.bell import prepare_dir, warn_unsafe

__all__ = ["Turns"]

#: Slots in the shared file: connections (processes × threads) that can wait in order at once.
SLOTS = 64
#: A waiter's slot counts only if refreshed this recently (seconds): a killed or frozen
#: process's place in the line is given up after this.
STALE = 0.05
#: A writer that has waited this long (seconds) goes first: every other holds back for it.
#: (Measured, see above: shorter costs throughput, longer lets the tail grow again.)
STARVE = 0.01
#: How long a waiter with others ahead of it sleeps before looking again (seconds).
BEHIND_PAUSE = 0.00005
#: How long an arriving writer trusts "no writer is starving" (seconds): a read of the file per
#: write costs ~0.6 µs, a clock read ~0.06 µs; a writer that starts starving is then passed by
#: arrivals for at most this long, a tenth of what it has already waited.
QUIET = 0.001

_SLOT = struct.Struct("dd")  # began waiting, last seen waiting (time.monotonic(); 0: idle)
_SLOTS_END = SLOTS * _SLOT.size
#: After the slots, one byte per slot: 1 while its writer has waited STARVE or more.
_SIZE = _SLOTS_END + SLOTS
_NONE_STARVING = bytes(SLOTS)
_ZERO = bytes(_SLOT.size)


class _Shared:
    """This process's descriptor of one turns file, and the slots its connections own."""

    def __init__(self, path: str) -> None:
        # O_NOFOLLOW: a link planted in place of the file must not lead our writes elsewhere.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
                raise ValueError(f"{path} is not a regular file of this user with one name")
            if st.st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
        except BaseException:
            os.close(fd)
            raise
        # Kept open for the life of the process: closing any descriptor of the file would drop
        # every POSIX lock this process holds on it.
        self.fd = fd
        self.owned: set[int] = set()
        self.lock = threading.Lock()

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset``, zeros past the end of a file cut short."""
        try:
            data = os.pread(self.fd, size, offset)
        except OSError:
            return bytes(size)
        return data if len(data) == size else data.ljust(size, b"\0")

    def write(self, offset: int, data: bytes) -> None:
        # The file only orders writers: one that cannot be written leaves them unordered.
        with contextlib.suppress(OSError):
            os.pwrite(self.fd, data, offset)

    def _own(self, i: int) -> bool:
        """Take slot ``i``'s byte lock; False while another process holds it."""
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, i)
        except OSError:
            return False
        return True

    def _clear(self, i: int) -> None:
        self.write(i * _SLOT.size, _ZERO)
        self.write(_SLOTS_END + i, b"\0")

    def _release(self, i: int) -> None:
        """Clear slot ``i``'s marks and let go of its byte lock."""
        self._clear(i)
        with contextlib.suppress(OSError):
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, i)

    def take(self) -> int | None:
        """A free slot, now owned by the caller, its marks (a dead owner's) cleared; None when
        all are taken."""
        with self.lock:
            for i in range(SLOTS):
                if i not in self.owned and self._own(i):
                    self.owned.add(i)
                    self._clear(i)
                    return i
        return None

    def clear_if_dead(self, i: int) -> None:
        """Clear slot ``i``'s marks if no process owns the slot (its owner died waiting); one
        owned by a live process, frozen or slow, is passed over but left alone."""
        with self.lock:
            if i not in self.owned and self._own(i):
                self._release(i)

    def give_back(self, i: int) -> None:
        with self.lock:
            if i in self.owned:
                self._release(i)
                self.owned.discard(i)


_shared: dict[str, tuple[int, _Shared]] = {}
_shared_lock = threading.Lock()


def _shared_for(path: str) -> _Shared:
    pid = os.getpid()
    with _shared_lock:
        got = _shared.get(path)
        if got is None or got[0] != pid:  # a forked child opens the file, and owns slots, anew
            _shared[path] = got = (pid, _Shared(path))
        return got[1]


class Turns:
    """One connection's place among the writers waiting for the database."""

    def __init__(self, shared: _Shared, slot: int) -> None:
        self.shared = shared
        self.slot = slot
        self.offset = slot * _SLOT.size
        self.flag = _SLOTS_END + slot
        self.since = 0.0
        self.starving = False
        self.quiet_until = 0.0  # time.monotonic() until which no writer is taken as starving
        weakref.finalize(self, shared.give_back, slot)

    @classmethod
    def open(cls, directory: str) -> Turns | None:
        """A slot in ``directory``'s turns file, or None if there is none to have (writes then
        go without turns): none free, or the directory or file is unsafe (logged once)."""
        path = os.path.join(directory, "turns")
        try:
            if not prepare_dir(directory):
                return None
            shared = _shared_for(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link where the file should be
                warn_unsafe(path, f"{path} is a symbolic link")
            return None
        except ValueError as exc:
            warn_unsafe(path, str(exc))
            return None
        slot = shared.take()
        return None if slot is None else cls(shared, slot)

    def someone_starving(self) -> bool:
        """Whether any writer is marked starving (looked up at most every QUIET seconds while
        none is): cheap enough for every write."""
        now = time.monotonic()
        if now < self.quiet_until:
            return False
        if _NONE_STARVING.startswith(self.shared.read(_SLOTS_END, SLOTS)):
            self.quiet_until = now + QUIET
            return False
        return True

    def wait(self, deadline: float) -> bool:
        """Count as waiting from now (if not yet) and hold back while a starving writer that
        began waiting before this one is still waiting, or until ``deadline``
        (time.monotonic()). Returns whether this writer is itself starving (it then tries the
        lock the moment it is free)."""
        now = time.monotonic()
        if not self.since:
            self.since = now
        while True:
            self.shared.write(self.offset, _SLOT.pack(self.since, now))
            if not self.starving and now - self.since >= STARVE:
                self.starving = True
                self.shared.write(self.flag, b"\1")
            if not self._behind(now) or now >= deadline:
                return self.starving
            time.sleep(BEHIND_PAUSE)
            now = time.monotonic()

    def leave(self) -> None:
        """No longer waiting: this writer holds the lock, or gave up."""
        if self.since:
            self.since = 0.0
            self.shared.write(self.offset, _ZERO)
        if self.starving:
            self.starving = False
            self.shared.write(self.flag, b"\0")

    def _behind(self, now: float) -> bool:
        """Whether a live starving writer goes before this one."""
        data = self.shared.read(0, _SIZE)
        flags = data[_SLOTS_END:]
        if flags == _NONE_STARVING:
            return False
        mine = (self.since, self.slot)
        ahead = False
        for i, flag in enumerate(flags):
            if not flag or i == self.slot:
                continue
            since, seen = _SLOT.unpack_from(data, i * _SLOT.size)
            # Live only if the times make sense (NaN fails every comparison): a mark last seen
            # in the future (another boot's clock, garbage) would otherwise hold every writer
            # back until its busy deadline. Another process may have written its mark just
            # after this one read the clock, hence the margin.
            if not (0.0 < since <= seen and now - STALE < seen <= now + STALE):
                self.shared.clear_if_dead(i)
            elif not self.starving or (since, i) < mine:
                ahead = True
        return ahead
