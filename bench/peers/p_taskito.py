"""taskito (Rust core) on SQLite; workers = ``taskito worker --pool prefork`` with
``Queue(workers=2)``: 2 child interpreters, found through ``TASKITO_PYTHON``."""

from __future__ import annotations

import os
import shutil
import sys
from importlib.metadata import version

import taskito
from common import mark

NAME = "taskito"
WORKERS = ("`taskito worker --app p_taskito:queue --pool prefork` with `Queue(workers=2)` "
           "(TASKITO_PYTHON = the venv's python)")
VERSION = version("taskito")


def make(path: str):
    q = taskito.Queue(db_path=path, workers=2, default_retry=0)

    @q.task()
    def noop(i=0):
        mark(i)

    return q, noop


def __getattr__(name: str):
    if name == "queue":
        q, _ = make(os.environ["TASKITO_DB"])
        globals()["queue"] = q
        return q
    raise AttributeError(name)


def producer():
    """The enqueue call of a producer process (bench/peers/producer.py), on the workers' file."""
    _, task = make(os.environ["TASKITO_DB"])
    return task.delay


class Peer:
    def __init__(self, ctx, tag: str) -> None:
        self.path = ctx.db(f"taskito-{tag}.db")
        self.queue, self.task = make(self.path)

    def enqueue(self, i: int) -> None:
        self.task.delay(i)

    def enqueue_bulk(self, ids: list[int]) -> None:
        self.task.map([(i,) for i in ids])

    def worker_env(self) -> dict[str, str]:
        return {"TASKITO_DB": self.path, "TASKITO_PYTHON": sys.executable}

    def worker_cmds(self) -> list[list[str]]:
        exe = shutil.which("taskito", path=os.path.dirname(sys.executable))
        return [[exe, "worker", "--app", "p_taskito:queue", "--pool", "prefork"]]

    def close(self) -> None:
        pass
