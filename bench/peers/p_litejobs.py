"""litejobs: its own App on a SQLite file; workers = ``litejobs run --workers 2`` (the scaling
section of bench/peers.py varies the number)."""

from __future__ import annotations

import os
import sys

from common import mark

import litejobs

NAME = "litejobs"
WORKERS = "`litejobs run --workers 2` (one supervisor, 2 worker processes)"
VERSION = litejobs.__version__


def make(path: str, durability: str):
    app = litejobs.App(path, durability=durability)

    @app.task(name="bench.noop", retries=0)
    def noop(i: int = 0) -> None:
        mark(i)

    return app, noop


def __getattr__(name: str):  # `litejobs run --app p_litejobs:app` in the worker processes
    if name == "app":
        app, _ = make(os.environ["LJ_DB"], os.environ.get("LJ_DURABILITY", "full"))
        globals()["app"] = app
        return app
    raise AttributeError(name)


def producer():
    """The enqueue call of a producer process (bench/peers/producer.py), on the workers' file."""
    _, task = make(os.environ["LJ_DB"], os.environ.get("LJ_DURABILITY", "full"))
    return task.enqueue


class Peer:
    def __init__(self, ctx, tag: str, durability: str = "full", workers: int = 2) -> None:
        self.path = ctx.db(f"litejobs-{durability}-{tag}.db")
        self.durability = durability
        self.workers = workers
        self.app, self.task = make(self.path, durability)
        self.app.store.connection()  # the file and its schema exist before any timing

    def enqueue(self, i: int) -> None:
        self.task.enqueue(i)

    def enqueue_bulk(self, ids: list[int]) -> None:
        self.app.enqueue_many([self.task.prepare(i) for i in ids])

    def worker_env(self) -> dict[str, str]:
        return {"LJ_DB": self.path, "LJ_DURABILITY": self.durability}

    def worker_cmds(self) -> list[list[str]]:
        return [[sys.executable, "-m", "litejobs", "run", "--app", "p_litejobs:app",
                 "--workers", str(self.workers), "--grace", "5"]]

    def close(self) -> None:
        self.app.store.close()
