"""The app the supervisor tests run: ``litejobs run --app tests.apps.basic:app``.

The database path comes from ``LITEJOBS_TEST_DB`` (read when ``app`` is first looked up, so the
test process can import this module and build its own App with ``make_app(path)``). Task names
are explicit (``basic.*``) so the supervisor's workers and the test process agree on them.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

import litejobs
from tests.apps import append_record as _append
from tests.apps import lazy_app

#: Back-off of ``basic.flaky``: retry k waits 0.3 * 2**(k-1) s (0.3, 0.6, 1.2), no jitter.
FLAKY_BACKOFF = litejobs.Backoff(base=0.3, factor=2.0, max=60.0, jitter=False)
FAST_BACKOFF = litejobs.Backoff(base=0.05, factor=1.0, max=1.0, jitter=False)


def add(a: int, b: int) -> int:
    return a + b


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def flaky(path: str) -> None:
    """Always fails; logs each attempt's start so the tests can measure the back-off."""
    job = litejobs.current_job()
    _append(path, {"event": "start", "id": job.id, "attempt": job.attempt, "pid": os.getpid(),
                   "t": time.time()})
    raise ConnectionError(f"flaky attempt {job.attempt}")


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def logged(path: str, seconds: float = 0.0, only_first: bool = False, tag: Any = None) -> int:
    """Log a start line, sleep, log an end line (job id, attempt, pid, start, end).

    With ``only_first`` it sleeps on the first attempt only, so a job interrupted or killed
    mid-sleep finishes at once when it runs again.
    """
    job = litejobs.current_job()
    start = time.time()
    base = {"id": job.id, "attempt": job.attempt, "pid": os.getpid(), "tag": tag}
    _append(path, {"event": "start", **base, "start": start})
    if seconds and (not only_first or job.attempt == 1):
        time.sleep(seconds)
    _append(path, {"event": "end", **base, "start": start, "end": time.time()})
    return os.getpid()


def segfault() -> None:
    ctypes.string_at(0)


def hard_exit() -> None:
    os._exit(3)


def picky(kind: str) -> None:
    """Retried only for ConnectionError (``retry_on``); anything else fails at once."""
    if kind == "connection":
        raise ConnectionError("connection refused (retryable)")
    raise ValueError("bad input (not retryable)")


def overrun(seconds: float = 30.0) -> None:
    """Has a 0.5 s hard timeout and sleeps longer."""
    time.sleep(seconds)


def context(fail_first: bool = False) -> dict[str, Any]:
    job = litejobs.current_job()
    if fail_first and job.attempt == 1:
        raise RuntimeError("first attempt fails on purpose")
    return {"id": job.id, "attempt": job.attempt, "task": job.task, "queue": job.queue,
            "scheduled_at": job.scheduled_at.isoformat(),
            "aware": job.scheduled_at.utcoffset() is not None}


def big(size: int) -> str:
    """Returns ``size`` bytes of JSON string."""
    return "x" * size


def fork_return(path: str) -> str:
    """Forks; the child returns from the task too, as a careless task's child would (a
    ``multiprocessing`` fork that falls through). Logs both processes' pids."""
    pid = os.fork()
    _append(path, {"event": "fork", "child": pid == 0, "pid": os.getpid()})
    if pid:
        os.waitpid(pid, 0)
    return "parent" if pid else "child"


def garble() -> None:
    """Writes bytes that are no frame of the protocol into the worker's pipe to its
    supervisor (its file descriptor is the worker's last argument)."""
    import sys

    os.write(int(sys.argv[-1]), b"\x00\x00\x00\x05{not json at all}")
    time.sleep(5)


def deaf() -> None:
    """Leaves the worker alive but deaf: its end of the supervisor's pipe (the worker's
    second-to-last argument) is replaced by an empty pipe, so the supervisor's next send to
    it fails, while the worker itself goes on (and heartbeats)."""
    import sys

    r, _w = os.pipe()
    os.dup2(r, int(sys.argv[-2]))


def make_app(path: str | os.PathLike[str]) -> litejobs.App:
    """An App on ``path`` with every test task registered under its ``basic.*`` name."""
    app = litejobs.App(path)
    app.task(name="basic.add")(add)
    app.task(name="basic.fail", retries=0)(fail)
    app.task(name="basic.flaky", retries=3, backoff=FLAKY_BACKOFF)(flaky)
    app.task(name="basic.slow", retries=0)(slow)
    app.task(name="basic.logged")(logged)
    app.task(name="basic.segfault")(segfault)
    app.task(name="basic.hard_exit")(hard_exit)
    app.task(name="basic.picky", retries=2, backoff=FAST_BACKOFF,
             retry_on=(ConnectionError,))(picky)
    app.task(name="basic.overrun", retries=0, timeout=0.5)(overrun)
    app.task(name="basic.context", retries=1, backoff=FAST_BACKOFF)(context)
    app.task(name="basic.big", retries=0)(big)
    app.task(name="basic.fork_return", retries=0)(fork_return)
    app.task(name="basic.garble", retries=0)(garble)
    app.task(name="basic.deaf", retries=0)(deaf)
    return app


__getattr__ = lazy_app(__name__, make_app)
