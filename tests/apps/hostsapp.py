"""The app of the many-hosts chaos test (tests/postgres/test_many_hosts.py):
``litejobs run --app tests.apps.hostsapp:app`` on a PostgreSQL URL from ``LITEJOBS_TEST_DB``.

Every task writes a ``start`` row and, when its body returns or raises, an ``end`` row to the
table ``host_log`` of the database it runs on (the test makes the table): job id, attempt,
task, host name, and the time on the DATABASE server's clock (``clock_timestamp()``), so the
rows of hosts whose own clocks are skewed compare with each other and with the store's times.
A worker killed mid-task writes no ``end``.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import litejobs
from tests.apps import lazy_app

#: Retries are cheap here: the test is about jobs surviving kills, not about back-off.
BACKOFF = litejobs.Backoff(base=0.1, factor=1.0, max=1.0, jitter=False)
RETRIES = 12
#: The queue whose concurrency limit (litejobs.toml ``[queues.narrow] concurrency``) the test
#: checks at every instant across hosts.
NARROW = "narrow"
NARROW_LIMIT = 2
#: How many distinct concurrency keys ``hosts.keyed`` spreads its jobs over (limit 1 each).
KEYS = 3

HOST_LOG = """
CREATE TABLE host_log (
    job_id  bigint NOT NULL,
    attempt bigint NOT NULL,
    task    text NOT NULL,
    host    text NOT NULL,
    event   text NOT NULL CHECK (event IN ('start', 'end')),
    ok      boolean,
    t       double precision NOT NULL
)
"""

_conn: list[Any] = []  # this worker's connection (workers are spawned: never a parent's)


def _log(event: str, ok: bool | None = None) -> None:
    import psycopg

    job = litejobs.current_job()
    row = (job.id, job.attempt, job.task, socket.gethostname(), event, ok)
    for _ in range(2):  # once more on a fresh connection if the cached one broke
        if not _conn:
            _conn.append(psycopg.connect(os.environ["LITEJOBS_TEST_DB"], autocommit=True))
        try:
            _conn[0].execute(
                "INSERT INTO host_log (job_id, attempt, task, host, event, ok, t) VALUES "
                "(%s, %s, %s, %s, %s, %s, extract(epoch FROM clock_timestamp()))", row)
            return
        except psycopg.OperationalError:
            _conn.pop().close()
    raise RuntimeError("host_log: the database cannot be reached")


def _body(seconds: float, fail: bool = False) -> float:
    _log("start")
    try:
        time.sleep(seconds)
        if fail:
            raise ConnectionError(f"failing attempt {litejobs.current_job().attempt} on purpose")
    except BaseException:
        _log("end", ok=False)
        raise
    _log("end", ok=True)
    return seconds


def plain(seconds: float) -> float:
    return _body(seconds)


def narrow(seconds: float) -> float:
    """In the queue ``narrow``: at most NARROW_LIMIT run at once, across all hosts."""
    return _body(seconds)


def keyed(key: int, seconds: float) -> float:
    """At most one job per key runs at once, across all hosts."""
    return _body(seconds)


def flaky(seconds: float) -> float:
    """Fails its first attempt, succeeds on the next."""
    return _body(seconds, fail=litejobs.current_job().attempt == 1)


def overrun(seconds: float) -> float:
    """Has a 1 s timeout and overruns it on its first attempt (its worker is ended)."""
    return _body(seconds if litejobs.current_job().attempt > 1 else 3.0)


def long(seconds: float) -> float:
    """A job long enough that its host is frozen mid-run (the test's fencing case)."""
    return _body(seconds)


def tick() -> None:
    """The cron entry ``tick``, every second."""
    _body(0.0)


def make_app(database: str) -> litejobs.App:
    app = litejobs.App(database)
    opts: dict[str, Any] = {"retries": RETRIES, "backoff": BACKOFF}
    app.task(name="hosts.plain", **opts)(plain)
    app.task(name="hosts.narrow", queue=NARROW, **opts)(narrow)
    app.task(name="hosts.keyed", concurrency_key=lambda key, seconds: f"k{key}",
             concurrency_limit=1, **opts)(keyed)
    app.task(name="hosts.flaky", **opts)(flaky)
    app.task(name="hosts.overrun", timeout=1.0, **opts)(overrun)
    app.task(name="hosts.long", **opts)(long)
    app.cron("* * * * * *", name="tick", overlap="allow")(tick)
    return app


__getattr__ = lazy_app(__name__, make_app)
