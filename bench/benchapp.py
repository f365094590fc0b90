"""The app `bench/core.py` benchmarks: one no-op task on ``$LITEJOBS_BENCH_DB``.

Workers started by ``litejobs run --app benchapp:app`` (from this directory) import this module,
so the database path comes from the environment, which they inherit.
"""

from __future__ import annotations

import os

import litejobs

TASK = "bench.noop"


def noop(i: int = 0) -> None:
    """Does nothing: what is measured is litejobs, not the task."""
    return None


def make_app(path: str, durability: str = "full"
             ) -> tuple[litejobs.App, litejobs.Task[[int], None]]:
    """An App on ``path`` with the no-op task registered under the name ``bench.noop``."""
    app = litejobs.App(path, durability=durability)
    return app, app.task(name=TASK, retries=0)(noop)


app, task = make_app(os.environ.get("LITEJOBS_BENCH_DB") or "bench.db",
                     os.environ.get("LITEJOBS_BENCH_DURABILITY") or "full")
