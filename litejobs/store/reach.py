"""A supervisor's start-up on PostgreSQL while the server is not there yet (a host booting
before the database, a restart, a fail-over): it retries with back-off for a bounded time,
one log line per attempt, as its main loop does after it started, instead of exiting at the
first refused connection. A SQLite file is never retried: its errors do not pass by waiting.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

from litejobs.errors import StorageError
from litejobs.store import is_url

__all__ = ["START_RETRY", "until_reached"]

log = logging.getLogger("litejobs")
T = TypeVar("T")

#: Seconds a start-up keeps retrying a server it cannot reach before it gives up.
START_RETRY = 60.0
#: The first wait between attempts; it doubles up to ``MAX_WAIT``.
FIRST_WAIT = 0.5
MAX_WAIT = 5.0


def until_reached(step: Callable[[], T], database: str | os.PathLike[str],
                  budget: float = START_RETRY) -> T:
    """``step()``, retried while it raises StorageError and the PostgreSQL server of
    ``database`` cannot be reached, for ``budget`` seconds; then one StorageError line. An
    error of a server that answers (a newer schema, a refused password) is retried once,
    for a connection that broke mid-way, then raised."""
    if not is_url(database):
        return step()
    url = os.fspath(database)
    deadline = time.monotonic() + budget
    wait = FIRST_WAIT
    attempt = 1
    answered = 0  # failures while the server accepted a connection
    while True:
        try:
            return step()
        except StorageError as exc:
            if not _down(url):
                answered += 1
                if answered > 1:
                    raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageError(f"{exc}; gave up after {attempt} attempts in {budget:g} s: "
                                   "start the server or check the URL") from None
            wait = min(wait, left)
            log.warning("start-up attempt %d: %s; retrying in %.1f s (for up to %g s)",
                        attempt, exc, wait, budget)
            time.sleep(wait)
            wait = min(wait * 2, MAX_WAIT)
            attempt += 1


def _down(url: str) -> bool:
    """Whether the server cannot be reached now: no answer (refused, timed out) or one saying
    it is starting, stopping or in recovery (SQLSTATE class 57P, 08)."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error as exc:
        state = getattr(exc, "sqlstate", None)
        return state is None or state.startswith(("57P", "08"))
    return False
