"""Procrastinate 3 + PostgreSQL (psycopg 3); workers = 2 ``procrastinate worker`` processes,
concurrency 1 each (jobs arrive by LISTEN/NOTIFY)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
from importlib.metadata import version

import procrastinate
from common import mark

NAME = "Procrastinate"
WORKERS = ("2 × `procrastinate --app p_procrastinate.app worker --concurrency 1` "
           "(sync task, LISTEN/NOTIFY on)")
VERSION = version("procrastinate")


def make(dsn: str) -> procrastinate.App:
    a = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @a.task(name="noop", queue="bench")
    def noop(i=0):
        mark(i)

    return a


def __getattr__(name: str):
    if name == "app":
        a = make(os.environ["PROCRASTINATE_DSN"])
        globals()["app"] = a
        return a
    raise AttributeError(name)


def producer():
    """The enqueue call of a producer process (bench/peers/producer.py), on the workers'
    database; the connection pool is closed when the process exits."""
    a = make(os.environ["PROCRASTINATE_DSN"])
    a.open()
    atexit.register(a.close)
    task = a.tasks["noop"]
    return lambda i: task.defer(i=i)


class Peer:
    def __init__(self, ctx, tag: str) -> None:
        self.dsn = ctx.fresh_pg("procrastinate")
        self.app = make(self.dsn)
        self.app.open()
        self.app.schema_manager.apply_schema()
        self.task = self.app.tasks["noop"]

    def enqueue(self, i: int) -> None:
        self.task.defer(i=i)

    def enqueue_bulk(self, ids: list[int]) -> None:
        self.task.batch_defer(*({"i": i} for i in ids))

    def worker_env(self) -> dict[str, str]:
        return {"PROCRASTINATE_DSN": self.dsn}

    def worker_cmds(self) -> list[list[str]]:
        exe = shutil.which("procrastinate", path=os.path.dirname(sys.executable))
        cmd = [exe, "--app", "p_procrastinate.app", "worker", "--concurrency", "1",
               "--queues", "bench"]
        return [cmd, cmd]

    def close(self) -> None:
        self.app.close()
