"""A process's SQLite locks survive every open litejobs makes of the same file.

Closing any descriptor of a file drops every POSIX lock the process holds on it, including
those of SQLite connections that other threads have open: the documented way to corrupt a
database (sqlite.org/howtocorrupt.html, 2.2). litejobs reads the file's header before SQLite
opens it; it must never do so with a descriptor it then closes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import litejobs
from litejobs.store import Store


def locks_on(path: Path) -> list[str]:
    """This process's POSIX locks on the file at ``path``, from /proc/locks."""
    ino = os.stat(path).st_ino
    out = []
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            if parts[1] == "POSIX" and parts[4] == str(os.getpid()) and parts[5].endswith(
                    f":{ino}"):
                out.append(line.strip())
    return out


def test_another_threads_open_keeps_this_connections_locks(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "jobs.db")

    @app.task(name="t")
    def t() -> None: ...

    t.enqueue()  # this thread's connection: SQLite holds a SHARED lock on the file (WAL)
    held = locks_on(tmp_path / "jobs.db")
    assert held, "no lock to lose: the test proves nothing"
    opened = threading.Thread(target=app.store.connection)  # another thread's first open
    opened.start()
    opened.join()
    assert locks_on(tmp_path / "jobs.db") == held
    Store(tmp_path / "jobs.db").verify()  # what `litejobs run` and `check` do first
    assert locks_on(tmp_path / "jobs.db") == held
