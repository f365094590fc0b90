"""Huey 3: SqliteHuey or RedisHuey; workers = ``huey_consumer -k process -w 2`` (defaults
otherwise: polling delay 0.1 s with backoff for SQLite, blocking BRPOP for Redis)."""

from __future__ import annotations

import os
import shutil
import sys

import huey as huey_mod
from common import mark

NAME = "Huey"
WORKERS = "`huey_consumer p_huey.huey -k process -w 2` (default polling settings)"
VERSION = huey_mod.__version__


def make(kind: str, where: str):
    if kind == "sqlite":
        h = huey_mod.SqliteHuey("bench", filename=where)
    else:
        h = huey_mod.RedisHuey("bench", url=where)

    @h.task()
    def noop(i=0):
        mark(i)

    return h, noop


def __getattr__(name: str):
    if name == "huey":
        h, _ = make(os.environ["HUEY_KIND"], os.environ["HUEY_WHERE"])
        globals()["huey"] = h
        return h
    raise AttributeError(name)


def producer():
    """The enqueue call of a producer process (bench/peers/producer.py), on the workers' store."""
    _, task = make(os.environ["HUEY_KIND"], os.environ["HUEY_WHERE"])
    return task


class Peer:
    bulk = False

    def __init__(self, ctx, tag: str, kind: str = "sqlite") -> None:
        self.kind = kind
        if kind == "sqlite":
            self.where = ctx.db(f"huey-{tag}.db")
        else:
            ctx.flush_redis()
            self.where = ctx.redis_url
        self.huey, self.task = make(kind, self.where)

    def enqueue(self, i: int) -> None:
        self.task(i)

    def worker_env(self) -> dict[str, str]:
        return {"HUEY_KIND": self.kind, "HUEY_WHERE": self.where}

    def worker_cmds(self) -> list[list[str]]:
        exe = shutil.which("huey_consumer", path=os.path.dirname(sys.executable))
        return [[exe, "p_huey.huey", "-k", "process", "-w", "2", "-q"]]

    def close(self) -> None:
        pass
