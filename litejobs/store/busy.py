"""Waiting for a locked file: a connection's busy handler, and the one back-off loop that runs a
write again when SQLite refuses it with SQLITE_BUSY at once."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

import apsw

from litejobs.store.turns import Turns

__all__ = ["BUSY_DEADLINE", "BUSY_PAUSE", "BUSY_PAUSE_MAX", "Waiter", "retry_busy"]

#: How long a write keeps retrying SQLITE_BUSY before it gives up with a StorageError.
BUSY_DEADLINE = 60.0
#: First and longest sleep between two tries of a locked file (seconds; see Waiter).
BUSY_PAUSE = 0.0001
BUSY_PAUSE_MAX = 0.002

T = TypeVar("T")


class Waiter:
    """A connection's busy handler: what a writer does while another holds the write lock.

    SQLite's own handler sleeps 1, 2, 5, 10 … 100 ms between tries. Under steady contention
    (several producers committing, each holding the lock well under a millisecond) a waiter
    that sleeps 25-100 ms keeps losing the lock to ones that just arrived: single enqueues
    took up to a second while the median was 0.2 ms. So tries come every few hundred
    microseconds, and a writer that has waited 10 ms goes first (see turns.py).
    """

    def __init__(self, timeout: float, directory: str | None) -> None:
        self.timeout = timeout
        self.directory = directory  # where the turns file lives; None: no turns (reads)
        self.turns: Turns | None = None
        self.writing = False
        self.started = 0.0

    def __call__(self, tries: int) -> bool:
        now = time.monotonic()
        if tries == 0:
            self.started = now
        elif now - self.started >= self.timeout:
            return False  # SQLITE_BUSY: the caller's retry loop or error takes over
        if self.writing:
            if self.turns is None and self.directory is not None:
                # made on the first contention only: an uncontended file gets nothing beside it
                self.turns = Turns.open(self.directory)
                self.directory = None
            if self.turns is not None and self.turns.wait(self.started + self.timeout):
                # starving, and no other goes first: take the lock the moment it is free
                if tries < 2000:
                    os.sched_yield()
                else:
                    time.sleep(BUSY_PAUSE * random.uniform(0.5, 1.0))
                return True
        pause = BUSY_PAUSE_MAX if tries > 10 else min(BUSY_PAUSE_MAX, BUSY_PAUSE * 1.5**tries)
        time.sleep(pause * random.uniform(0.5, 1.0))
        return True

    def begin(self) -> None:
        """A write transaction is about to ask for the lock: not before a starving writer."""
        self.writing = True
        turns = self.turns
        if turns is not None and turns.someone_starving():
            turns.wait(time.monotonic() + self.timeout)

    def end(self) -> None:
        """The write has the lock (or gave up): out of the line."""
        self.writing = False
        if self.turns is not None:
            self.turns.leave()



def retry_busy(fn: Callable[[], T]) -> T:
    """Run ``fn`` again on SQLITE_BUSY, with a jittered back-off, until BUSY_DEADLINE; then the
    BusyError propagates. For a whole ``BEGIN IMMEDIATE`` transaction whose lock wait outlasted
    the busy handler, and for statements SQLite may refuse at once, without its busy handler
    (switching to WAL while another process does)."""
    deadline = time.monotonic() + BUSY_DEADLINE
    pause = 0.001
    while True:
        try:
            return fn()
        except apsw.BusyError:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, 0.1)
