"""The app of ``tests/test_logs.py``: tasks whose outcomes, and whose own logging records,
the supervisor's log must show. Task names are ``logs.*``."""

from __future__ import annotations

import logging
import os
import time

import litejobs
from tests.apps import lazy_app

BACKOFF = litejobs.Backoff(base=0.05, factor=1.0, max=1.0, jitter=False)

# Logged at import, in each worker: it reaches the supervisor's log without a job.
logging.getLogger("myapp").info("logapp imported")


def ok() -> int:
    return 1


def fails() -> None:
    raise ValueError("boom")


def overrun() -> None:
    time.sleep(30)


def sleeper(label: str) -> None:
    logging.getLogger("myapp").info("%s started", label)
    time.sleep(30)


def chatty() -> None:
    log = logging.getLogger("myapp")
    log.info("hello %s", 1)
    log.debug("details %s", 2)


def flood(count: int) -> None:
    log = logging.getLogger("myapp.flood")
    for i in range(count):
        log.info("line %d", i)


def long_line(size: int) -> None:
    logging.getLogger("myapp").warning("x" * size)


def make_app(path: str | os.PathLike[str]) -> litejobs.App:
    app = litejobs.App(path)
    app.task(name="logs.ok")(ok)
    app.task(name="logs.fails", retries=2, backoff=BACKOFF)(fails)
    app.task(name="logs.overrun", retries=0, timeout=0.5)(overrun)
    app.task(name="logs.sleeper", retries=0)(sleeper)
    app.task(name="logs.chatty")(chatty)
    app.task(name="logs.flood")(flood)
    app.task(name="logs.long_line")(long_line)
    return app


__getattr__ = lazy_app(__name__, make_app)
