"""The quickstart's tasks: one App, four tasks, one SQLite file.

The database is ``$LITEJOBS_DEMO_DB`` when set (demo.py sets it to a fresh temporary file), else
``quickstart.db`` in the current directory. Workers started by ``litejobs run`` inherit the
environment and the directory, so they open the same file as the process that enqueues.

Run it by hand, from this directory::

    litejobs run --app tasks:app --workers 2        # in one terminal
    python -c "import tasks; print(tasks.add.enqueue(2, 3).result(timeout=10))"   # in another
"""

from __future__ import annotations

import os
import time

import litejobs

app = litejobs.App(os.environ.get("LITEJOBS_DEMO_DB") or "quickstart.db")


@app.task
def add(a: int, b: int) -> int:
    """Succeeds at once. Bare form: its name is ``tasks.add``."""
    return a + b


@app.task(name="demo.flaky", backoff=litejobs.Backoff(base=0.2, factor=2.0, jitter=False))
def flaky(payload: str) -> str:
    """Fails on attempts 1 and 2, succeeds on attempt 3 (within the default retries=3)."""
    attempt = litejobs.current_job().attempt
    if attempt < 3:
        raise ConnectionError(f"upstream not ready (attempt {attempt})")
    return f"{payload} delivered on attempt {attempt}"


@app.task(name="demo.doomed", retries=1, backoff=litejobs.Backoff(base=0.2, jitter=False))
def doomed(reason: str) -> None:
    """Always fails: with retries=1 it runs twice, then ends ``failed``."""
    raise ValueError(reason)


@app.task(name="demo.remind")
def remind(who: str) -> str:
    """Enqueued with ``.options(delay=2)``: reports how long after its due time it started."""
    ctx = litejobs.current_job()
    late = time.time() - ctx.scheduled_at.timestamp()
    return f"reminded {who} ({late:.2f} s after due)"
