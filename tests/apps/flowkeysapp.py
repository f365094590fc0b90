"""The app the flow-key tests run (``app = "tests.apps.flowkeysapp:app"``).

Every task is ``hit``: it writes one JSON line when it starts and one when it ends (a single
``O_APPEND`` write each), with its flow key, so the tests measure each key's starts per window
and its jobs running at once from the tasks' own clocks. The database comes from
``LITEJOBS_TEST_DB`` when ``app`` is first looked up; the test process builds its own App
with ``make_app(path)``.
"""

from __future__ import annotations

import os
import time

import litejobs
from tests.apps import append_record, lazy_app


def hit(path: str, key: str, seconds: float = 0.0) -> int:
    """Log a start line, sleep ``seconds``, log an end line (job id, key, pid, times)."""
    job = litejobs.current_job()
    start = time.time()
    base = {"id": job.id, "key": key, "pid": os.getpid(), "start": start}
    append_record(path, {"event": "start", **base})
    if seconds:
        time.sleep(seconds)
    append_record(path, {"event": "end", **base, "end": time.time()})
    return os.getpid()


def key_of(path: str, key: str, seconds: float = 0.0) -> str:
    """The flow key of a call: its ``key`` argument (a destination host, say)."""
    return key


def make_app(path: str | os.PathLike[str]) -> litejobs.App:
    """An App on ``path`` with every ``fk.*`` task registered."""
    app = litejobs.App(path)
    app.task(name="fk.rated", retries=0, flow_key=key_of, rate_limit="5/s")(hit)
    app.task(name="fk.parallel", retries=0, flow_key=key_of, concurrency_limit=2)(hit)
    app.task(name="fk.both", retries=0, flow_key=key_of, rate_limit="8/s",
             concurrency_limit=2)(hit)
    app.task(name="fk.any", retries=0)(hit)  # limits per call
    return app


__getattr__ = lazy_app(__name__, make_app)
