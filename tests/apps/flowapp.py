"""The app the flow-control tests run: ``litejobs run --config …`` with
``app = "tests.apps.flowapp:app"``.

Like ``tests.apps.basic``, the database comes from ``LITEJOBS_TEST_DB`` when ``app`` is first
looked up, and the test process builds its own App with ``make_app(path)``. Every task is
``logged`` under another name and other options (queue, concurrency key, uniqueness): it writes
one JSON line when it starts and one when it ends, each with a single ``O_APPEND`` write, so the
tests can measure overlap and start rates from the tasks' own clocks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import litejobs
from tests.apps import append_record as _append
from tests.apps import lazy_app

FAST_BACKOFF = litejobs.Backoff(base=0.05, factor=1.0, max=1.0, jitter=False)


def logged(path: str, seconds: float = 0.0, tag: Any = None, group: str | None = None,
           only_first: bool = False) -> int:
    """Log a start line, sleep ``seconds`` (on the first attempt only with ``only_first``), log
    an end line. Each line has the job id, attempt, task, queue, pid, tag and group."""
    job = litejobs.current_job()
    start = time.time()
    base = {"id": job.id, "attempt": job.attempt, "task": job.task, "queue": job.queue,
            "pid": os.getpid(), "tag": tag, "group": group}
    _append(path, {"event": "start", **base, "start": start})
    if seconds and (not only_first or job.attempt == 1):
        time.sleep(seconds)
    _append(path, {"event": "end", **base, "start": start, "end": time.time()})
    return os.getpid()


def barrier(path: str, count: int, timeout: float = 15.0) -> int:
    """Log a start line, then wait until ``count`` barrier starts are in the log: when
    ``count`` of these jobs all succeed, that many workers were ready at once."""
    job = litejobs.current_job()
    _append(path, {"event": "barrier", "id": job.id, "pid": os.getpid(), "t": time.time()})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, encoding="utf-8") as f:
            if sum('"event":"barrier"' in line for line in f) >= count:
                break
        time.sleep(0.01)
    return os.getpid()


def fail(path: str, tag: Any = None) -> None:
    job = litejobs.current_job()
    _append(path, {"event": "start", "id": job.id, "attempt": job.attempt, "task": job.task,
                   "queue": job.queue, "pid": os.getpid(), "tag": tag, "group": None,
                   "start": time.time()})
    raise ValueError(f"failing on purpose ({tag})")


def group_key(path: str, seconds: float = 0.0, tag: Any = None, group: str | None = None,
              only_first: bool = False) -> str:
    """The concurrency key of ``flow.per_group*``: computed from the call's arguments."""
    return f"group-{group}"


def make_app(path: str | os.PathLike[str]) -> litejobs.App:
    """An App on ``path`` with every ``flow.*`` task registered."""
    app = litejobs.App(path)
    app.task(name="flow.work", backoff=FAST_BACKOFF)(logged)
    app.task(name="flow.barrier", retries=0)(barrier)
    app.task(name="flow.fail", retries=0)(fail)
    app.task(name="flow.other_fail", retries=0)(fail)
    app.task(name="flow.capped", queue="capped")(logged)
    app.task(name="flow.capq", queue="capq")(logged)
    app.task(name="flow.rated", queue="rated")(logged)
    app.task(name="flow.paused", queue="p")(logged)
    app.task(name="flow.serial", concurrency_key="shared")(logged)
    app.task(name="flow.duo", concurrency_key="duo", concurrency_limit=2)(logged)
    app.task(name="flow.per_group", concurrency_key=group_key)(logged)
    app.task(name="flow.per_group2", concurrency_key=group_key, concurrency_limit=2)(logged)
    app.task(name="flow.slot", concurrency_key="slot", retries=3,
             backoff=FAST_BACKOFF)(logged)
    app.task(name="flow.unique", unique_for=60)(logged)
    return app


def produce(db: str, go: str, task: str, key: str | None, args: list[Any], n: int) -> None:
    """A producer process: wait for the ``go`` file, then enqueue ``task`` ``n`` times as fast
    as it can (with ``key`` when given) and print the job ids as a JSON array."""
    app = make_app(db)
    t = app.tasks[task]
    bound = t.options(key=key) if key is not None else t
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("producer: no go signal within 30 s")
        time.sleep(0.001)
    ids = [bound.enqueue(*args).id for _ in range(n)]
    print(json.dumps(ids), flush=True)


__getattr__ = lazy_app(__name__, make_app)
