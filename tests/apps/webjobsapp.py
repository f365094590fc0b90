"""The app of the jobs pages' tests: every ``basic.*`` task, plus a login whose password is
masked (``redact``) and a task that reports progress step by step, each step released by a
file the test writes (no sleeps). Its database is $LITEJOBS_TEST_DB."""

from __future__ import annotations

import os
import time

import litejobs
from tests.apps import basic, lazy_app


def login(user: str, password: str, remember: bool = False) -> str:
    return user


def stepper(path: str, steps: int = 2) -> int:
    """Progress 1/(steps+1), 2/(steps+1), …: step k waits for the file ``path.k``."""
    job = litejobs.current_job()
    for k in range(1, steps + 1):
        job.set_progress(k / (steps + 1), f"step {k} of {steps}")
        job.set_metadata(step=k)
        deadline = time.monotonic() + 60
        while not os.path.exists(f"{path}.{k}") and time.monotonic() < deadline:
            time.sleep(0.02)
    return steps


def make_app(path: str | os.PathLike[str]) -> litejobs.App:
    app = basic.make_app(path)
    app.task(name="web.login", redact=["password"])(login)
    app.task(name="web.stepper", retries=0)(stepper)
    return app


__getattr__ = lazy_app(__name__, make_app)
