"""The app of the asyncio tests: ``litejobs run --app tests.apps.asyncapp:app``.

``async def`` tasks next to a sync one, all on the default queue. The database path comes
from ``LITEJOBS_TEST_DB`` (see ``tests.apps.lazy_app``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import litejobs
from tests.apps import append_record as _append
from tests.apps import lazy_app

FAST_BACKOFF = litejobs.Backoff(base=0.05, factor=1.0, max=1.0, jitter=False)


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


def sync_add(a: int, b: int) -> int:
    return a + b


async def whoami() -> dict[str, Any]:
    """The job as its coroutine sees it, and the worker's pid and loop."""
    await asyncio.sleep(0)
    job = litejobs.current_job()
    return {"id": job.id, "attempt": job.attempt, "pid": os.getpid(),
            "loop": id(asyncio.get_running_loop())}


async def flaky(path: str) -> str:
    """Fails its first two attempts (after an await), succeeds on the third."""
    job = litejobs.current_job()
    await asyncio.sleep(0.001)
    _append(path, {"event": "start", "id": job.id, "attempt": job.attempt})
    if job.attempt < 3:
        raise ConnectionError(f"flaky attempt {job.attempt}")
    return f"ok on {job.attempt}"


async def progress(steps: int) -> int:
    """Reports progress between awaits; the last report has its message."""
    job = litejobs.current_job()
    for i in range(1, steps + 1):
        await asyncio.sleep(0.01)
        job.set_progress(i / steps, f"step {i} of {steps}")
    job.set_metadata(done=steps)
    return steps


async def sleeper(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


async def stubborn(path: str) -> None:
    """Swallows every cancellation: only the supervisor's hard timeout ends it."""
    _append(path, {"event": "start", "pid": os.getpid(), "t": time.time()})
    while True:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            _append(path, {"event": "cancelled", "pid": os.getpid(), "t": time.time()})


async def blocker(path: str) -> None:
    """Blocks its loop with sync code: a cancellation cannot even be delivered."""
    _append(path, {"event": "start", "pid": os.getpid(), "t": time.time()})
    await asyncio.sleep(0)
    time.sleep(60)


async def own_timeout() -> None:
    """Raises its own TimeoutError: a failure like any other, not the job's timeout."""
    await asyncio.sleep(0)
    raise TimeoutError("the task's own timeout")


async def then_add(a: int, b: int) -> litejobs.Then:
    await asyncio.sleep(0)
    add_task = APP.tasks["aio.add"]
    return litejobs.then([add_task.prepare(a, b), add_task.prepare(b, a)],
                         APP.tasks["aio.total"].prepare())


async def total() -> int:
    """A continuation: the sum of the results it waited on."""
    await asyncio.sleep(0)
    return sum(litejobs.current_job().results())


def make_app(path: str | os.PathLike[str]) -> litejobs.App:
    """An App on ``path`` with every ``aio.*`` task."""
    app = litejobs.App(str(path))
    app.task(name="aio.add")(add)
    app.task(name="aio.sync_add")(sync_add)
    app.task(name="aio.whoami")(whoami)
    app.task(name="aio.flaky", retries=3, backoff=FAST_BACKOFF)(flaky)
    app.task(name="aio.progress")(progress)
    app.task(name="aio.sleeper", retries=0, timeout=1.0)(sleeper)
    app.task(name="aio.stubborn", retries=0, timeout=1.0)(stubborn)
    app.task(name="aio.blocker", retries=0, timeout=1.0)(blocker)
    app.task(name="aio.own_timeout", retries=0)(own_timeout)
    app.task(name="aio.then_add")(then_add)
    app.task(name="aio.total")(total)
    global APP
    APP = app
    return app


APP: litejobs.App

__getattr__ = lazy_app(__name__, make_app)
