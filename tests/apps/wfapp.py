"""The app the workflow process tests run: ``litejobs run`` with
``app = "tests.apps.wfapp:app"``.

Like ``tests.apps.basic``, the database comes from ``LITEJOBS_TEST_DB`` when ``app`` is first
looked up, and the test process builds its own App with ``make_app(path)``. Tasks write one
JSON line per start and end (``append_record``: a single ``O_APPEND`` write), so a test counts
how often a step really ran from the tasks' own log, not from what litejobs says.
"""

from __future__ import annotations

import os
import time
from typing import Any

import litejobs
from tests.apps import append_record as _append
from tests.apps import lazy_app


def _log(path: str, event: str, **extra: Any) -> None:
    job = litejobs.current_job()
    _append(path, {"event": event, "id": job.id, "attempt": job.attempt, "task": job.task,
                   "pid": os.getpid(), "t": time.time(), **extra})


def step(path: str, value: Any, seconds: float = 0.0) -> Any:
    """Log a start, sleep ``seconds``, log an end; returns ``value``."""
    _log(path, "start")
    if seconds:
        time.sleep(seconds)
    _log(path, "end")
    return value


def gate(path: str, go: str, value: Any, timeout: float = 60.0) -> Any:
    """Log a start, wait until the file ``go`` exists (polling every 0.5 ms, so steps released
    by one file end within a millisecond of each other), log an end; returns ``value``."""
    _log(path, "start")
    deadline = time.monotonic() + timeout
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate: no {go} within {timeout} s")
        time.sleep(0.0005)
    _log(path, "end")
    return value


def fan_in(path: str, seconds: float = 0.0) -> list[Any]:
    """Log a start, sleep ``seconds``, log an end; returns the upstream results in order."""
    results = litejobs.current_job().results()
    _log(path, "start", results=results)
    if seconds:
        time.sleep(seconds)
    _log(path, "end")
    return results


#: A job of a killed supervisor is rescued as a crash, which counts as an attempt: every task
#: may retry, at once, so a kill never fails a run (the tests count the runs from the log).
RETRY: dict[str, Any] = {
    "retries": 3, "backoff": litejobs.Backoff(base=0.05, factor=1.0, jitter=False)}


def make_app(path: str | os.PathLike[str]) -> litejobs.App:
    """An App on ``path`` with every ``wf.*`` task registered."""
    app = litejobs.App(path)
    step_task = app.task(name="wf.step", **RETRY)(step)
    app.task(name="wf.gate", **RETRY)(gate)
    fan_in_task = app.task(name="wf.fan_in", **RETRY)(fan_in)

    def children(path: str, n: int, seconds: float = 0.0) -> litejobs.Then:
        return litejobs.then([step_task.prepare(path, i) for i in range(n)],
                             fan_in_task.prepare(path, seconds))

    def split(path: str, n: int, seconds: float = 0.0) -> litejobs.Then:
        """Children ``step(path, i)`` for i < n, then ``fan_in(path, seconds)`` with their
        results."""
        _log(path, "start")
        return children(path, n, seconds)

    def nest(path: str, depth: int) -> litejobs.Then:
        """``depth`` levels of continuations, each with one child; the last splits in 3."""
        _log(path, "start")
        if depth == 0:
            return children(path, 3)
        return litejobs.then([step_task.prepare(path, depth)],
                             nest_task.prepare(path, depth - 1))

    app.task(name="wf.split", **RETRY)(split)
    nest_task = app.task(name="wf.nest", **RETRY)(nest)
    return app

__getattr__ = lazy_app(__name__, make_app)
