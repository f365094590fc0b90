"""A cron app for process tests: ``litejobs run --app tests.apps.cronapp:app``.

The database comes from ``LITEJOBS_TEST_DB``; each fire appends one JSON line (entry, the
instant it was fired for, when it started, pid) to ``LITEJOBS_TEST_LOG``.
"""

from __future__ import annotations

import json
import os
import time

import litejobs

app = litejobs.App(os.environ.get("LITEJOBS_TEST_DB", "cron-test.db"))


@app.cron("* * * * * *", name="every_second", overlap="allow")
def every_second() -> None:
    job = litejobs.current_job()
    line = json.dumps({"entry": "every_second", "instant": job.scheduled_at.timestamp(),
                       "started": time.time(), "pid": os.getpid(), "id": job.id}) + "\n"
    fd = os.open(os.environ["LITEJOBS_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
