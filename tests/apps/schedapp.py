"""An app for the stored-schedules process tests: ``litejobs run --app tests.apps.schedapp:app``.

The database is ``LITEJOBS_TEST_DB``; each run of ``sched.log`` appends one JSON line (its tag,
the instant it was fired for, its job id) to ``LITEJOBS_TEST_FIRES`` (by default the database's
path + ``.fires``: a PostgreSQL URL is no path). It declares no
cron entry: the tests store theirs with ``app.schedule`` while the supervisor runs.
"""

from __future__ import annotations

import os

import litejobs
from tests.apps import append_record, lazy_app


def make_app(path: str) -> litejobs.App:
    app = litejobs.App(path)
    fires = os.environ.get("LITEJOBS_TEST_FIRES") or path + ".fires"

    @app.task(name="sched.log")
    def log(tag: str) -> None:
        job = litejobs.current_job()
        append_record(fires, {"tag": tag, "instant": job.scheduled_at.timestamp(),
                                        "id": job.id, "pid": os.getpid()})

    return app


__getattr__ = lazy_app(__name__, make_app)
