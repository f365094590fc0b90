"""The app of the workflow property tests (tests/test_workflow_property.py): ``litejobs run
--config …`` with ``app = "tests.apps.propapp:app"``, or ``make_app(path)`` in the test process.

Every task writes what it does to ``<dir>/log``, one JSON line per event with a single
``O_APPEND`` write (so lines of many workers interleave whole, in the order they happened):
``start`` (with the upstream results it was given), then ``ok`` just before it returns or
``fail`` just before it raises. A task fails while the file ``<dir>/fail-<name>`` exists (the
test "fixes" it by deleting the file); ``flaky=True`` makes attempt 1 fail with a retried error.
Only ConnectionError (and a worker's death) is retried, so a marker's ValueError fails a step
at once while a supervisor killed under it does not.
"""

from __future__ import annotations

import os
import time
from typing import Any

import litejobs
from litejobs.errors import WorkerDied
from tests.apps import append_record as _append
from tests.apps import lazy_app

FAST_BACKOFF = litejobs.Backoff(base=0.01, factor=1.0, max=0.01, jitter=False)


def _record(folder: str, event: str, name: str, **extra: Any) -> None:
    job = litejobs.current_job()
    _append(os.path.join(folder, "log"), {"event": event, "name": name, "id": job.id,
                                          "attempt": job.attempt, "pid": os.getpid(), **extra})


def _run(folder: str, name: str, flaky: bool, sleep: float) -> None:
    """Log the start, sleep, and raise as the markers say (logging the failure first)."""
    _record(folder, "start", name, results=litejobs.current_job().results())
    if sleep:
        time.sleep(sleep)
    if flaky and litejobs.current_job().attempt == 1:
        _record(folder, "fail", name)
        raise ConnectionError(f"{name}: flaky first attempt")
    if os.path.exists(os.path.join(folder, f"fail-{name}")):
        _record(folder, "fail", name)
        raise ValueError(f"{name}: failing until fixed")


def step(folder: str, name: str, value: str, flaky: bool = False, sleep: float = 0.0) -> str:
    """A step: returns ``value`` (what its downstream steps see)."""
    _run(folder, name, flaky, sleep)
    _record(folder, "ok", name)
    return value


def make_app(path: str | os.PathLike[str]) -> litejobs.App:
    """An App on ``path`` with the ``prop.*`` tasks."""
    app = litejobs.App(path)
    options: dict[str, Any] = {"retries": 50, "retry_on": (ConnectionError, WorkerDied),
                               "backoff": FAST_BACKOFF}
    step_task = app.task(name="prop.step", **options)(step)

    def fanout(folder: str, name: str, kids: int, flaky: bool = False,
               sleep: float = 0.0) -> litejobs.Then:
        """A step that continues with ``litejobs.then``: ``kids`` children ``<name>.c<j>``,
        then ``<name>.join`` whose value is ``name`` (so downstream steps see what a plain
        step ``name`` would have returned)."""
        _run(folder, name, flaky, sleep)
        _record(folder, "ok", name)
        children = [step_task.prepare(folder, f"{name}.c{j}", f"{name}.c{j}", sleep=sleep)
                    for j in range(kids)]
        return litejobs.then(children, step_task.prepare(folder, f"{name}.join", name,
                                                         sleep=sleep))

    app.task(name="prop.fanout", **options)(fanout)
    return app


__getattr__ = lazy_app(__name__, make_app)
