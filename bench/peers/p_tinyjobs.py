"""tinyjobs on SQLite; workers = one ``tinyjobs worker --concurrency 2`` (default polling
0.005–0.5 s)."""

from __future__ import annotations

import os
import sys
from importlib.metadata import version

import tinyjobs
from common import mark

NAME = "tinyjobs"
WORKERS = "`python -m tinyjobs worker --app p_tinyjobs:app --concurrency 2` (default polling)"
VERSION = version("tinyjobs")


def make(path: str):
    a = tinyjobs.TinyJobs(f"sqlite:///{path}")

    @a.task(name="noop")
    def noop(i=0):
        mark(i)

    return a, noop


def __getattr__(name: str):
    if name == "app":
        a, _ = make(os.environ["TINYJOBS_DB"])
        globals()["app"] = a
        return a
    raise AttributeError(name)


def producer():
    """The enqueue call of a producer process (bench/peers/producer.py), on the workers' file."""
    _, task = make(os.environ["TINYJOBS_DB"])
    return task.enqueue


class Peer:
    enqueue_bulk = None

    def __init__(self, ctx, tag: str) -> None:
        self.path = ctx.db(f"tinyjobs-{tag}.db")
        self.app, self.task = make(self.path)

    def enqueue(self, i: int) -> None:
        self.task.enqueue(i)

    def worker_env(self) -> dict[str, str]:
        return {"TINYJOBS_DB": self.path}

    def worker_cmds(self) -> list[list[str]]:
        return [[sys.executable, "-m", "tinyjobs", "worker", "--app", "p_tinyjobs:app",
                 "--concurrency", "2"]]

    def close(self) -> None:
        pass
