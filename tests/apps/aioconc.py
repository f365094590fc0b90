"""The app of the async_concurrency tests: coroutines that log their starts and ends.

Every task appends JSON lines (``tests.apps.append_record``) to the file named by its first
argument: ``start`` and ``end`` with the job id, attempt and worker pid, so a test can tell
from the log how many ran at once in each worker. The database path comes from
``LITEJOBS_TEST_DB`` (see ``tests.apps.lazy_app``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

import litejobs
from tests.apps import append_record, lazy_app


def _log(path: str, event: str, **more: object) -> None:
    job = litejobs.current_job()
    append_record(path, {"event": event, "id": job.id, "attempt": job.attempt,
                         "pid": os.getpid(), "t": time.time(), **more})


def _starts(path: str) -> int:
    try:
        with open(path) as f:
            return sum(1 for line in f if line.endswith("\n")
                       and json.loads(line)["event"] == "start")
    except FileNotFoundError:
        return 0


async def gate(path: str, starts: int, hold: float) -> int:
    """Waits (at most 30 s) until the log holds ``starts`` starts, then ``hold`` seconds more:
    it can only end early when that many coroutines ran at once. Returns its own job id, as
    ``current_job()`` sees it after the awaits."""
    _log(path, "start")
    deadline = time.monotonic() + 30
    while _starts(path) < starts and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    await asyncio.sleep(hold)
    job = litejobs.current_job()
    job.set_progress(1.0, f"job {job.id}")
    job.set_metadata(me=job.id)
    logging.getLogger("conc").warning("gate of job %s", job.id)  # sent with its own job
    _log(path, "end")
    return job.id


async def nap(path: str, seconds: float) -> int:
    """Sleeps ``seconds``; logs a cancellation it receives (and lets it end the job)."""
    _log(path, "start")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _log(path, "cancelled")
        raise
    _log(path, "end")
    return litejobs.current_job().id


async def stubborn(path: str) -> None:
    """Swallows every cancellation: only the supervisor's hard timeout ends it."""
    _log(path, "start")
    while True:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            _log(path, "cancelled")


async def deaf(path: str) -> None:
    """Swallows every cancellation and has no timeout: cancelled, it is ended with its worker
    once the supervisor's grace for a cancelled coroutine runs out."""
    _log(path, "start")
    while True:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            _log(path, "cancelled")


def blocking(path: str, seconds: float) -> int:
    """A sync task: it must run alone in its worker."""
    _log(path, "start", sync=True)
    time.sleep(seconds)
    _log(path, "end", sync=True)
    return litejobs.current_job().id


def make_app(path: str | os.PathLike[str]) -> litejobs.App:
    """An App on ``path`` with every ``conc.*`` task."""
    app = litejobs.App(str(path))
    app.task(name="conc.gate")(gate)
    app.task(name="conc.nap", retries=3)(nap)
    app.task(name="conc.stubborn", retries=0, timeout=1.0)(stubborn)
    app.task(name="conc.deaf", retries=0)(deaf)
    app.task(name="conc.blocking")(blocking)
    return app


__getattr__ = lazy_app(__name__, make_app)
